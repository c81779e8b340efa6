"""Domain operations: what the chat does, independent of how a request arrived."""
