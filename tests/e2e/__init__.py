"""End-to-end tier: the real worker, a real rtc SDK caller and a LiveKit test server."""
