"""Landing: a completed job's outputs, from Apiframe's CDN into S3, exactly once.

- `job`: the steps (confirm with Apiframe where needed, store each output, the manifest, LANDED);
- `download`: fetching one output safely (allowed hosts, pinned addresses, a byte cap, typing
  from the magic bytes); `hosts`: which hosts and addresses are allowed;
- `storage`: create-only, checksummed S3 writes through the process's one boto3 client;
- `errors`: transient (retry later) or permanent (the job fails with a reason).
"""
