"""Every wire format hallsync speaks, sans-IO: bytes in, messages out. Imports nothing of ours."""
