"""The fake's endpoints, one module per part of Sailthru's API.

/user, /list, /event, /purchase, /return, /send, /blast, /job and page-view tracking,
each reading and writing the fake's world (:mod:`.._state`) as Sailthru would.
"""
