"""The TensorBay "Cloud Storage" page's own code (shared/seed-tensorbay-cloud-storage.txt),
as a user copies it: only the URL, the key and the names are filled in. Run with the SDK's
own python (tests/tensorbay_sdk.py), against a Bayport served over HTTPS:

    TENSORBAY_URL=https://127.0.0.1:PORT/ TENSORBAY_ACCESS_KEY=Accesskey-... \\
    REQUESTS_CA_BUNDLE=.../tls/ca.pem SEED_PROVIDER=s3 SEED_CONFIG='{...}' \\
    python tests/e2e/tensorbay_seed_page.py

SEED_CONFIG holds the arguments of the page's `create_*_storage_config` call (`name`,
`file_path` and the provider's keys); SEED_DATASET names the dataset. The page stops at
`upload_dataset`; the script then commits and reads the dataset back through the SDK, and
prints `RESULT {json}` as its last line for the test to check against the bucket.
"""

from __future__ import annotations

import hashlib
import json
import os

from tensorbay import GAS
from tensorbay.dataset import Dataset
from tensorbay.label import Classification

config = json.loads(os.environ["SEED_CONFIG"])
config_name = config.pop("name")
dataset_name = os.environ["SEED_DATASET"]

gas = GAS(os.environ["TENSORBAY_ACCESS_KEY"], os.environ["TENSORBAY_URL"])

# "TensorBay SDK supports following methods to configure cloud storage."
create = {
    "oss": gas.create_oss_storage_config,
    "s3": gas.create_s3_storage_config,
    "azure": gas.create_azure_storage_config,
}[os.environ["SEED_PROVIDER"]]
create(config_name, config.pop("file_path"), **config)

# --- the page's code, from "Create Authorized Storage Dataset" on ------------------------
dataset_client = gas.create_dataset(dataset_name, config_name=config_name)

cloud_client = gas.get_cloud_client(config_name)

# Use AuthData to organize a dataset by the "Dataset" class before importing.
dataset = Dataset(dataset_name)

# TensorBay uses "segment" to separate different parts in a dataset.
segment = dataset.create_segment()

images = cloud_client.list_auth_data("data/images/")
labels = cloud_client.list_auth_data("data/labels/")

for auth_data, label in zip(images, labels):  # noqa: B905 (the page's own line)
    with label.open() as fp:
        auth_data.label.classification = Classification.loads(json.load(fp))
    segment.append(auth_data)

dataset_client = gas.upload_dataset(dataset, jobs=8)
# --- the page's code ends ----------------------------------------------------------------

dataset_client.commit("import from the cloud")
remote = Dataset(dataset_name, gas)
rows = []
for remote_segment in remote:
    for data in remote_segment:
        with data.open() as fp:
            content = fp.read()
        rows.append(
            {
                "segment": remote_segment.name,
                "path": data.path,
                "label": data.label.dumps(),
                "size": len(content),
                "md5": hashlib.md5(content).hexdigest(),
            }
        )
listed = {"images": [a.path for a in images], "labels": [a.path for a in labels]}
print("RESULT " + json.dumps({"listed": listed, "rows": rows}, sort_keys=True), flush=True)
