"""The compute-node agent: runs inside the batch job and never uses the network."""
