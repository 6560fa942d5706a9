"""``kubectl certdepot``: the day-two command line (status, renew, inspect, inventory)."""
