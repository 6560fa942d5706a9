"""certdepot benchmarks: distribution at scale, delegated issuance, repository throughput and
upstream economy, each measured next to its baseline in the same run (``python -m bench``)."""
