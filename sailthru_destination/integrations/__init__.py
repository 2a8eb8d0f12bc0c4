"""Host framework integrations, one module per framework, each an optional extra."""
