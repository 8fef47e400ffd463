"""The HTTP edge both API faces share (Bayport's API in api/, the TensorBay one in
tensorbay_api/): who is calling (authentication, keys' roles), how much a workspace may hold
(bulkheads), waits that hold no thread, and the container a request reaches. Neither face
imports the other's modules for these; this package imports neither face."""
