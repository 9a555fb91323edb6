"""The pure scheduling core: device model, requests, ledger, fit and scoring. No I/O, no clock."""
