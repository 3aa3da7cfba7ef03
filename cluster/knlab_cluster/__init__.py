"""knlab-cluster: a real single-node cluster for knlab.serverless, built here and run air-gapped."""
