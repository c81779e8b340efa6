"""Socket.IO transport: the event handlers and what the server pushes."""
