"""The use cases both HTTP faces call (api/, tensorbay_api/): collaborators passed in."""
