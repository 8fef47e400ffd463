"""The import logic: plan a job, shard a listing, copy a shard, finalize. Entry points call it."""
