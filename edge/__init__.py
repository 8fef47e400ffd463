"""The HTTP edge both API faces share (Bayport's API in api/, the TensorBay one in
tensorbay_api/): who is calling (authentication, keys' roles), how fast and how much a caller
may ask (rate limits, the outermost middleware; bulkheads per workspace), request hygiene and
text checks, and the container a request reaches. Neither face imports the other's modules for
these; this package imports neither face."""
