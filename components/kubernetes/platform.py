"""The whole platform of one stack on a Kubernetes cluster (settings.target: kubernetes): the operators
as pinned Helm releases, then the stack's namespace with Postgres (CloudNativePG), Redis, the app, its
KEDA scaling, monitoring objects and network policies, each part a component of its own."""

from __future__ import annotations

import functools
from collections.abc import Mapping

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.backup_bucket import BackupBucket
from components.credentials import operator_secret_env
from components.kubernetes.objects import Group, create_later
from components.kubernetes.secrets import Secrets
from configs.kubernetes import app, backup, cron, files, gateway, monitoring, network, postgres, redis, scaling
from configs.kubernetes.operators import charts
from configs.render import served_data_dirs
from model.settings import Settings
from model.topology import POSTGRES_CLUSTER

PROMETHEUS_SERVICE = "kube-prometheus-stack-prometheus"  # the chart's Service, for the release's name


class KubernetesPlatform(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        stack: str,
        settings: Settings,
        secrets: pulumi.Output[Mapping[str, str]],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("stories:kubernetes:Platform", name, None, opts)
        k8s_settings = settings.kubernetes
        namespace = k8s_settings.namespace
        provider = k8s.Provider("kubernetes", context=k8s_settings.context, opts=pulumi.ResourceOptions(parent=self))
        operators = self._operators(settings, provider)

        def on_cluster(*after: pulumi.Resource) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[*operators, *after])

        ns = k8s.core.v1.Namespace(
            "namespace",
            metadata={"name": namespace, "labels": {"app.kubernetes.io/part-of": "stories"}},
            opts=on_cluster(),
        )
        operator_secrets = operator_secret_env(settings, secrets)
        stack_secrets = Secrets("secrets", settings, operator_secrets, on_cluster(ns))
        self.outputs: dict[str, pulumi.Input[object]] = {"url": settings.public_url, "namespace": namespace}
        bucket = self._bucket(stack, settings, stack_secrets) if settings.backup.s3.enabled else None
        database = self._database(settings, bucket, on_cluster(ns, stack_secrets))
        if bucket is not None:
            self._files_backup(stack, settings, bucket, on_cluster(ns, stack_secrets))
        Group(
            "cache",
            [redis.config_map(settings, namespace), redis.stateful_set(settings, namespace), redis.service(namespace)],
            on_cluster(ns, stack_secrets),
        )
        documents = [
            *app.data_claims(settings, namespace),
            app.deployment(settings, namespace, settings.scaling.enabled),
        ]
        documents += [app.service(settings, namespace), app.disruption_budget(namespace)]
        Group("app", documents, on_cluster(ns, stack_secrets, database))
        if settings.cron.enabled:
            Group("cron", cron.cron_jobs(settings, namespace), on_cluster(ns, stack_secrets))
        if settings.scaling.enabled:
            prometheus = (
                f"http://{PROMETHEUS_SERVICE}.{k8s_settings.operators.kube_prometheus_stack.namespace}.svc:9090"
            )
            Group("scaling", [scaling.scaled_object(settings, namespace, prometheus)], on_cluster(ns))
        if settings.monitoring.enabled:
            documents = monitoring.prometheus_rules(settings, namespace) + monitoring.monitors(settings, namespace)
            if settings.monitoring.grafana.enabled:
                documents += monitoring.dashboards(settings, namespace)
            Group("monitoring", documents, on_cluster(ns))
        self._front_door(settings, on_cluster(ns))
        Group("network", network.network_policies(settings, namespace), on_cluster(ns))
        self.outputs["cronSecret"] = stack_secrets.cron_secret.value
        self.outputs["backupResticPassword"] = stack_secrets.restic_password.value
        self.register_outputs(self.outputs)

    def _operators(self, settings: Settings, provider: k8s.Provider) -> list[pulumi.Resource]:
        group = pulumi.ComponentResource(
            "stories:kubernetes:Operators", "operators", None, pulumi.ResourceOptions(parent=self)
        )
        releases: dict[str, k8s.helm.v3.Release] = {}
        for chart in charts(settings):
            first = [releases[name] for name in chart.after if name in releases]
            releases[chart.name] = k8s.helm.v3.Release(
                chart.name,
                name=chart.name,
                chart=chart.chart,
                version=chart.settings.version,
                repository_opts={"repo": chart.repository} if chart.repository else None,
                namespace=chart.settings.namespace,
                create_namespace=True,
                values=chart.values,
                atomic=True,
                opts=pulumi.ResourceOptions(parent=group, provider=provider, depends_on=first),
            )
        return list(releases.values())

    def _front_door(self, settings: Settings, opts: pulumi.ResourceOptions) -> None:
        """The Gateway and its routes, policies and certificate; the static server of the data directories
        where some are served."""
        namespace = settings.kubernetes.namespace
        Group("gateway", [gateway.gateway_class(namespace), *gateway.front_door(settings, namespace)], opts)
        if served_data_dirs(settings):
            documents = [files.config_map(settings, namespace), files.deployment(settings, namespace)]
            Group("files", [*documents, files.service(namespace)], opts)

    def _database(self, settings: Settings, bucket: BackupBucket | None, opts: pulumi.ResourceOptions) -> Group:
        namespace = settings.kubernetes.namespace
        documents = [postgres.pooler(settings, namespace)]
        if bucket is None:
            return Group("database", [postgres.cluster(settings, namespace, None), *documents], opts)
        group = Group("database", [*documents, postgres.scheduled_backup(settings, namespace)], opts)
        cluster = bucket.bucket.bucket.apply(lambda name: postgres.cluster(settings, namespace, name))
        create_later(postgres.CNPG, "Cluster", POSTGRES_CLUSTER, cluster, pulumi.ResourceOptions(parent=group))
        return group

    def _files_backup(self, stack: str, settings: Settings, bucket: BackupBucket, opts: pulumi.ResourceOptions) -> None:
        """restic's CronJobs for the app's data directories (Postgres has CloudNativePG's backups)."""
        group = Group("files-backup", [], opts)
        namespace = settings.kubernetes.namespace
        for name in backup.CRON_JOBS:
            job = bucket.bucket.bucket.apply(functools.partial(backup.cron_job, settings, namespace, stack, name))
            create_later("batch/v1", "CronJob", name, job, pulumi.ResourceOptions(parent=group))

    def _bucket(self, stack: str, settings: Settings, stack_secrets: Secrets) -> BackupBucket:
        s3 = settings.backup.s3
        aws_provider = aws.Provider("aws", region=s3.region, opts=pulumi.ResourceOptions(parent=self))
        bucket = BackupBucket("backup", stack, s3, pulumi.ResourceOptions(parent=self, providers=[aws_provider]))
        self.outputs["backupBucket"] = bucket.bucket.bucket
        if bucket.access_key_id is not None and bucket.secret_access_key is not None:
            stack_secrets.backup_writer(bucket.access_key_id, bucket.secret_access_key, s3.region)
        return bucket
