"""The off-site backup bucket: versioned, encrypted, private, TLS-only, with lifecycle rules, and a
writer identity that may touch only the backup tools' prefixes."""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from model.settings import BACKUP_TOOL_PREFIXES, S3BackupSettings


def writer_policy(bucket_arn: str, kms_key_arn: str | None) -> str:
    """Exactly what pgBackRest and restic need on their prefixes: list within them, read, write and
    delete objects under them (both tools expire their own old files)."""
    object_arns = [f"{bucket_arn}/{prefix}*" for prefix in BACKUP_TOOL_PREFIXES]
    statements = [
        {
            "Sid": "ListBackupPrefixes",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": bucket_arn,
            "Condition": {"StringLike": {"s3:prefix": [f"{p}*" for p in BACKUP_TOOL_PREFIXES]}},
        },
        {"Sid": "LocateBucket", "Effect": "Allow", "Action": ["s3:GetBucketLocation"], "Resource": bucket_arn},
        {
            "Sid": "ReadWriteBackupObjects",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
            "Resource": object_arns,
        },
    ]
    if kms_key_arn:
        statements.append(
            {
                "Sid": "UseBucketKey",
                "Effect": "Allow",
                "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"],
                "Resource": kms_key_arn,
            }
        )
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def tls_only_policy(bucket_arn: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [bucket_arn, f"{bucket_arn}/*"],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ],
        }
    )


class BackupBucket(pulumi.ComponentResource):
    bucket: aws.s3.Bucket
    access_key_id: pulumi.Output[str] | None
    secret_access_key: pulumi.Output[str] | None
    role_arn: pulumi.Output[str] | None

    def __init__(
        self, name: str, stack: str, settings: S3BackupSettings, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("stories:platform:BackupBucket", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = {"platform": "1001-stories", "stack": stack, "purpose": "backups"}
        self.bucket = aws.s3.Bucket(
            "bucket",
            bucket_prefix=f"{settings.bucket_prefix}{stack}-",
            force_destroy=settings.force_destroy,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, protect=not settings.force_destroy),
        )
        bucket_id = self.bucket.id
        aws.s3.BucketOwnershipControls(
            "ownership",
            bucket=bucket_id,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
            opts=child,
        )
        public_block = aws.s3.BucketPublicAccessBlock(
            "public-access-block",
            bucket=bucket_id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketVersioning(
            "versioning",
            bucket=bucket_id,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"),
            opts=child,
        )
        by_default = aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
            sse_algorithm="aws:kms" if settings.kms_key_arn else "AES256",
            kms_master_key_id=settings.kms_key_arn,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            "encryption",
            bucket=bucket_id,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=by_default,
                    bucket_key_enabled=bool(settings.kms_key_arn),
                )
            ],
            opts=child,
        )
        aws.s3.BucketLifecycleConfiguration("lifecycle", bucket=bucket_id, rules=self._lifecycle(settings), opts=child)
        aws.s3.BucketPolicy(
            "tls-only",
            bucket=bucket_id,
            policy=self.bucket.arn.apply(tls_only_policy),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[public_block]),
        )
        policy = self.bucket.arn.apply(lambda arn: writer_policy(arn, settings.kms_key_arn))
        self.access_key_id = self.secret_access_key = self.role_arn = None
        if settings.writer == "user":
            self._writer_user(stack, policy, tags)
        else:
            self._writer_role(stack, policy, tags, settings)
        self.register_outputs({"bucket": self.bucket.bucket})

    @staticmethod
    def _lifecycle(settings: S3BackupSettings) -> list[aws.s3.BucketLifecycleConfigurationRuleArgs]:
        """Bucket-wide: abort stale multipart uploads, expire noncurrent versions. Current versions
        expire only under `expireCurrentPrefixes`: the backup tools prune their own prefixes."""
        rules = [
            aws.s3.BucketLifecycleConfigurationRuleArgs(
                id="abort-incomplete-uploads-and-old-versions",
                status="Enabled",
                filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                    days_after_initiation=settings.abort_incomplete_upload_days
                ),
                noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                    noncurrent_days=settings.noncurrent_version_days
                ),
            )
        ]
        rules += [
            aws.s3.BucketLifecycleConfigurationRuleArgs(
                id=f"expire-{prefix.rstrip('/')}",
                status="Enabled",
                filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=prefix),
                expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=settings.retention_days),
            )
            for prefix in settings.expire_current_prefixes
        ]
        return rules

    def _writer_user(self, stack: str, policy: pulumi.Output[str], tags: dict[str, str]) -> None:
        user = aws.iam.User(
            "writer", name=f"stories-{stack}-backup-writer", tags=tags, opts=pulumi.ResourceOptions(parent=self)
        )
        aws.iam.UserPolicy("writer-policy", user=user.name, policy=policy, opts=pulumi.ResourceOptions(parent=self))
        key = aws.iam.AccessKey("writer-key", user=user.name, opts=pulumi.ResourceOptions(parent=self))
        self.access_key_id = pulumi.Output.secret(key.id)
        self.secret_access_key = pulumi.Output.secret(key.secret)

    def _writer_role(
        self, stack: str, policy: pulumi.Output[str], tags: dict[str, str], settings: S3BackupSettings
    ) -> None:
        trust = json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": settings.writer_trusted_principal_arn},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        )
        role = aws.iam.Role(
            "writer",
            name=f"stories-{stack}-backup-writer",
            assume_role_policy=trust,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        aws.iam.RolePolicy("writer-policy", role=role.id, policy=policy, opts=pulumi.ResourceOptions(parent=self))
        self.role_arn = role.arn
