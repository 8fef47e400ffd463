"""The two API faces, as the shared edge must know them: where the TensorBay API is mounted,
its per-object registration call, and the prefixes its SDK puts before an access key."""

# Where the TensorBay API is mounted, and the per-object registration call (one per object
# from the SDK's `upload_dataset`), which the API's rate limit counts apart (edge/limits.py).
TENSORBAY_PREFIX = "/gatewayv2/tensorbay-open-api/v1"
CALLBACK_SUFFIX = "/multi/cloud-callback"

# The SDK refuses an access key without one of these prefixes; a Bayport key is used as
# `ACCESSKEY-<key>` (or as a bootstrap key that already starts so).
KEY_PREFIXES = ("ACCESSKEY-", "Accesskey-")
