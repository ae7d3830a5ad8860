"""The process around the engine: composition root, ticker, clock and the systemd protocol."""
