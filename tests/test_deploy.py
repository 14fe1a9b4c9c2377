"""What deploy/ promises, held against the code."""

import ast
import json

import boto3

from tests.support import ROOT

# The IAM action each S3 operation needs (HeadObject is GetObject's; HeadBucket, ListBucket's).
ACTIONS = {
    "put_object": "s3:PutObject",
    "head_object": "s3:GetObject",
    "get_object": "s3:GetObject",  # a compacted job's timeline, read back
    "head_bucket": "s3:ListBucket",
    "generate_presigned_url": "s3:GetObject",  # ?presign= and inputs from the bucket
    # A multipart upload's steps are PutObject's, but for its abort.
    "create_multipart_upload": "s3:PutObject",
    "upload_part": "s3:PutObject",
    "complete_multipart_upload": "s3:PutObject",
    "abort_multipart_upload": "s3:AbortMultipartUpload",
}
# Every method of a boto3 S3 client that sends a request (or signs one).
S3_CLIENT = boto3.session.Session().client("s3", region_name="us-east-1")
S3_METHODS = {*S3_CLIENT.meta.method_to_api_mapping, "generate_presigned_url"}


def s3_operations() -> set[str]:
    """Every boto3 S3 operation production code calls on `client` or `self.client`."""
    found: set[str] = set()
    for package in ("imagedock", "receiver", "worker"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Attribute) and isinstance(
                    node.value, ast.Attribute | ast.Name
                ):
                    owner = (
                        node.value.attr if isinstance(node.value, ast.Attribute) else node.value.id
                    )
                    if owner == "client" and node.attr in S3_METHODS:
                        found.add(node.attr)
    return found


def test_the_iam_policy_grants_exactly_what_the_code_calls() -> None:
    """deploy/iam-policy.json allows each S3 action the code needs and nothing more, and the
    bucket-level one without a prefix condition, which HeadBucket cannot satisfy."""
    policy = json.loads((ROOT / "deploy" / "iam-policy.json").read_text())
    granted = {action for statement in policy["Statement"] for action in statement["Action"]}
    assert s3_operations() == set(ACTIONS)
    assert granted == set(ACTIONS.values())
    [bucket_level] = [s for s in policy["Statement"] if "s3:ListBucket" in s["Action"]]
    assert "Condition" not in bucket_level
