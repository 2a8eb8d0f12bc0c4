"""What must happen at most once: sends, orders, lists.

Sent keys (in memory or Redis), outcomes in doubt, the list mutex and the list registry;
the features consult them so a retry or a second host never repeats a write.
"""
