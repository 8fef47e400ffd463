"""The seed's example as a TensorBay user writes it with the real SDK (tensorbay 1.24.2),
unchanged but for the URL: run with the SDK's own python (tests/tensorbay_sdk.py), never the
project's, and against a Bayport served over HTTPS.

    TENSORBAY_URL=https://127.0.0.1:PORT/ TENSORBAY_ACCESS_KEY=Accesskey-... \\
    REQUESTS_CA_BUNDLE=.../tls/ca.pem  python tests/e2e/tensorbay_seed.py [CONFIG.json]

For each provider (oss, s3, azure) it authorizes a storage config, imports the bucket's
`data/images/*` with their `data/labels/<stem>.json` classification labels into a dataset of
its own (segment `train`), commits, and reads everything back through the SDK. The last line
on stdout is `RESULT {json}`, for the test to check against the buckets and Bayport's DB.
Any SDK error is raised: that is what the test is for.

CONFIG.json, or the environment for a key it lacks (`TENSORBAY_<PROVIDER>_<KEY>`, e.g.
`TENSORBAY_OSS_BUCKET_NAME`, `TENSORBAY_AZURE_ACCOUNT_KEY`):

    {"oss":   {"config_name", "dataset", "file_path", "endpoint",
               "accesskey_id", "accesskey_secret", "bucket_name"},
     "s3":    {the same keys as oss},
     "azure": {"config_name", "dataset", "file_path", "account_type" ("Global" | "China"),
               "account_name", "account_key", "container_name"},
     "images": "data/images/", "labels": "data/labels/"}   (optional; env TENSORBAY_IMAGES,
                                                            TENSORBAY_LABELS)
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import sys
from typing import Any

from tensorbay import GAS
from tensorbay.dataset import Dataset
from tensorbay.label import Classification, ClassificationSubcatalog

PROVIDERS = ("oss", "s3", "azure")
AZURE_KEYS = ("account_type", "account_name", "account_key", "container_name")
BUCKET_KEYS = ("endpoint", "accesskey_id", "accesskey_secret", "bucket_name")
KEYS = {
    "oss": ("config_name", "dataset", "file_path", *BUCKET_KEYS),
    "s3": ("config_name", "dataset", "file_path", *BUCKET_KEYS),
    "azure": ("config_name", "dataset", "file_path", *AZURE_KEYS),
}
# The seed's labels: {"category": "cat" | "dog", "attributes": {"color": ...}}.
CATEGORIES = ("cat", "dog")
COLORS = ("red", "black", "white", "ginger")
SEGMENT = "train"


def load_config(argv: list[str]) -> dict[str, Any]:
    given: dict[str, Any] = {}
    if len(argv) > 1:
        with open(argv[1]) as fp:
            given = json.load(fp)
    config: dict[str, Any] = {
        "images": given.get("images") or os.environ.get("TENSORBAY_IMAGES", "data/images/"),
        "labels": given.get("labels") or os.environ.get("TENSORBAY_LABELS", "data/labels/"),
    }
    for provider in PROVIDERS:
        section = given.get(provider, {})
        config[provider] = {}
        for key in KEYS[provider]:
            variable = f"TENSORBAY_{provider.upper()}_{key.upper()}"
            value = section.get(key, os.environ.get(variable))
            if value is None:
                raise SystemExit(f"no {provider}.{key}: give it in the config file or ${variable}")
            config[provider][key] = value
    return config


def create_storage_configs(gas: GAS, config: dict[str, Any]) -> None:
    oss, s3, azure = config["oss"], config["s3"], config["azure"]
    gas.create_oss_storage_config(
        oss["config_name"],
        oss["file_path"],
        endpoint=oss["endpoint"],
        accesskey_id=oss["accesskey_id"],
        accesskey_secret=oss["accesskey_secret"],
        bucket_name=oss["bucket_name"],
    )
    gas.create_s3_storage_config(
        s3["config_name"],
        s3["file_path"],
        endpoint=s3["endpoint"],
        accesskey_id=s3["accesskey_id"],
        accesskey_secret=s3["accesskey_secret"],
        bucket_name=s3["bucket_name"],
    )
    gas.create_azure_storage_config(
        azure["config_name"],
        azure["file_path"],
        account_type=azure["account_type"],
        account_name=azure["account_name"],
        account_key=azure["account_key"],
        container_name=azure["container_name"],
    )


def import_and_read_back(
    gas: GAS, dataset_name: str, config_name: str, images: str, labels: str
) -> dict[str, Any]:
    gas.create_dataset(dataset_name, config_name=config_name)

    dataset = Dataset(dataset_name)
    segment = dataset.create_segment(SEGMENT)
    cloud_client = gas.get_cloud_client(config_name)
    label_files = {label.path: label for label in cloud_client.list_auth_data(labels)}
    imported = []
    for auth_data in cloud_client.list_auth_data(images):
        stem = posixpath.splitext(auth_data.path[len(images) :])[0]
        label_path = posixpath.join(labels, stem + ".json")
        if label_path not in label_files:
            raise RuntimeError(f"{auth_data.path}: no label {label_path} in {config_name}")
        with label_files[label_path].open() as fp:
            auth_data.label.classification = Classification.loads(json.load(fp))
        segment.append(auth_data)
        imported.append(
            {
                "cloud_path": auth_data.path,
                "label_path": label_path,
                "remote_path": auth_data.target_remote_path,
                "label": auth_data.label.dumps(),
            }
        )

    dataset.catalog.classification = ClassificationSubcatalog()
    for category in CATEGORIES:
        dataset.catalog.classification.add_category(category)
    dataset.catalog.classification.add_attribute("color", enum=COLORS)

    dataset_client = gas.upload_dataset(dataset, jobs=8)
    dataset_client.commit("initial")
    print(f"{dataset_name}: imported {len(imported)} from {config_name}, committed")

    # Read back through the SDK, as a user would.
    remote = Dataset(dataset_name, gas)
    segments: dict[str, list[dict[str, Any]]] = {}
    for remote_segment in remote:
        rows = segments.setdefault(remote_segment.name, [])
        for data in remote_segment:
            with data.open() as fp:
                content = fp.read()
            category = data.label.classification.category
            md5 = hashlib.md5(content).hexdigest()
            print(
                f"{dataset_name}/{remote_segment.name}/{data.path} {category} {len(content)} {md5}"
            )
            rows.append(
                {
                    "path": data.path,
                    "category": category,
                    "label": data.label.dumps(),
                    "size": len(content),
                    "md5": md5,
                }
            )
    statistics = dataset_client.get_label_statistics()
    print(f"{dataset_name}: label statistics {json.dumps(statistics.dumps())}")
    return {
        "dataset": dataset_name,
        "config_name": config_name,
        "commit_id": dataset_client.status.commit_id,
        "imported": imported,
        "catalog": remote.catalog.dumps(),
        "segments": segments,
        "label_statistics": statistics.dumps(),
    }


def main(argv: list[str]) -> None:
    config = load_config(argv)
    gas = GAS(os.environ["TENSORBAY_ACCESS_KEY"], os.environ["TENSORBAY_URL"])

    create_storage_configs(gas, config)
    storage_configs = [storage.dumps() for storage in gas.list_auth_storage_configs()]
    names = {storage["name"] for storage in storage_configs}
    wanted = {config[provider]["config_name"] for provider in PROVIDERS}
    if not wanted <= names:
        raise RuntimeError(f"storage configs {sorted(wanted - names)} are not listed: {names}")

    datasets = {}
    for provider in PROVIDERS:
        datasets[provider] = import_and_read_back(
            gas,
            config[provider]["dataset"],
            config[provider]["config_name"],
            config["images"],
            config["labels"],
        )
    result = {"storage_configs": storage_configs, "datasets": datasets}
    print("RESULT " + json.dumps(result, sort_keys=True), flush=True)


if __name__ == "__main__":
    main(sys.argv)
