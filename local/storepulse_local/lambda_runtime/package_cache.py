"""A function's deployment package as deployed: fetched, checked against CodeSha256, unpacked.

moto's ``get_function`` answers ``Code.Location`` with a placeholder host
(``https://awslambda-<region>-tasks.s3.<region>.amazonaws.com/<S3Key>``) that nothing serves, but
its path is the S3 key the function was created (or last updated) from. The runtime fetches that
key from the account's buckets and keeps the object whose SHA-256 is the function's CodeSha256:
the hash, not the name, says it is the deployed code. A function created with an inline ZipFile
has no such object on the embedded AWS: the deploy always goes through S3.
"""

from __future__ import annotations

import base64
import hashlib
import io
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from botocore.exceptions import ClientError

from storepulse_local.lambda_runtime.common import LambdaRuntimeError


def code_sha256(data: bytes) -> str:
    """Lambda's CodeSha256: the base64 (not hex) SHA-256 of the zip."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


class PackageCache:
    """Unpacked packages under ``root``, one folder per CodeSha256 (hex: base64 has ``/``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str) -> Path:
        return self.root / base64.b64decode(sha256).hex()

    def unpacked(self, sha256: str, fetch: Callable[[], bytes]) -> Path:
        """The package's folder; ``fetch`` runs only when this hash is not unpacked yet."""
        target = self.path(sha256)
        if target.is_dir():  # only ever renamed into place complete
            return target
        data = fetch()
        if code_sha256(data) != sha256:
            raise LambdaRuntimeError(
                f"fetched code has SHA-256 {code_sha256(data)}, the function's is {sha256}"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".unpacking-", dir=self.root))
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                archive.extractall(staging)  # zipfile drops absolute and ".." parts
            staging.rename(target)
        except OSError:
            if not target.is_dir():  # not another runtime thread that unpacked it first
                raise
        except zipfile.BadZipFile as exc:
            raise LambdaRuntimeError(f"the deployed code is not a zip: {exc}") from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target


def deployed_code(s3: Any, function: dict[str, Any]) -> bytes:
    """The bytes of a function's code (``function``: a ``get_function`` answer)."""
    conf = function["Configuration"]
    location = (function.get("Code") or {}).get("Location") or ""
    key = urlparse(location).path.lstrip("/")
    if key:
        for bucket in s3.list_buckets()["Buckets"]:
            try:
                body = s3.get_object(Bucket=bucket["Name"], Key=key)["Body"].read()
            except ClientError:
                continue
            if code_sha256(body) == conf["CodeSha256"]:
                return body
    raise LambdaRuntimeError(
        f"{conf['FunctionName']}: no S3 object holds its code (CodeSha256 {conf['CodeSha256']}, "
        f"location {location!r}); on the embedded AWS, create functions from S3, not ZipFile"
    )
