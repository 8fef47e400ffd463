"""The part of TensorBay's open API that scripts written with the `tensorbay` SDK use, served
by Bayport at `/gatewayv2/tensorbay-open-api/v1/`, so that those scripts only change the URL.

What the SDK sends is listed in docs/tensorbay-open-api.md; docs/tensorbay-compat.md says
what Bayport does with it, and where it differs from TensorBay."""

# Where the API is mounted, its per-object registration call and the SDK's key prefixes: the
# shared HTTP edge's knowledge of this face (edge/faces.py).
from edge.faces import CALLBACK_SUFFIX, KEY_PREFIXES
from edge.faces import TENSORBAY_PREFIX as PREFIX

__all__ = ["CALLBACK_SUFFIX", "KEY_PREFIXES", "PREFIX"]
