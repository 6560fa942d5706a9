"""Real processes for tests and the demo: provisioning and launching kube-apiserver, etcd,
Pebble, PostgreSQL and a DNS server on loopback."""
