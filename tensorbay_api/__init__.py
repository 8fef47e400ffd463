"""The part of TensorBay's open API that scripts written with the `tensorbay` SDK use, served
by Bayport at `/gatewayv2/tensorbay-open-api/v1/`, so that those scripts only change the URL.

What the SDK sends is listed in docs/tensorbay-open-api.md; docs/tensorbay-compat.md says
what Bayport does with it, and where it differs from TensorBay."""

# Where the API is mounted, and the per-object registration call (one per object from the
# SDK's `upload_dataset`), which the API's rate limit counts apart (api/limits.py).
PREFIX = "/gatewayv2/tensorbay-open-api/v1"
CALLBACK_SUFFIX = "/multi/cloud-callback"

# The SDK refuses an access key without one of these prefixes; a Bayport key is used as
# `ACCESSKEY-<key>` (or as a bootstrap key that already starts so).
KEY_PREFIXES = ("ACCESSKEY-", "Accesskey-")
