"""Read-only readers for HAMi's encodings, so a cluster moving from HAMi keeps its state."""
