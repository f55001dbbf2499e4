"""nginx at the edge: TLS termination, rate limits, caching headers, the only published ports; and
certbot, which obtains and renews the certificate by webroot when the stack uses Let's Encrypt."""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_docker as docker
import pulumi_tls as tls

from components.container import Attachment, HardenedContainer, Healthcheck, Mount, Port, ServiceSpec, Upload, UploadDir
from components.context import StackContext
from components.images_resource import pull
from components.network import Networks
from configs import healthchecks
from configs.render import ACME_CA_FILE, render_certbot, render_nginx, served_data_dirs
from model.settings import Settings
from model.topology import LETSENCRYPT_DIR, NGINX_UID, Topology

SELF_SIGNED_VALIDITY_HOURS = 365 * 24
CERTBOT_DIR = "/etc/stories/certbot"


def certbot_healthcheck(topo: Topology) -> list[str]:
    """Healthy while the certificate nginx serves has more than a sixth of its lifetime left: certbot
    renews at a third (30 of 90 days), so unhealthy means renewals have failed for weeks; and unhealthy
    when there is no certificate at all after the start period. Whatever the lifetime of the CA's
    certificates, and unlike the age of certbot's archive files, which only grows."""
    script = (
        "import datetime, sys; from cryptography import x509; "
        f"c = x509.load_pem_x509_certificate(open('{topo.letsencrypt_live_dir}/fullchain.pem', 'rb').read()); "
        "end = getattr(c, 'not_valid_after_utc', None) or c.not_valid_after.replace(tzinfo=datetime.timezone.utc); "
        "start = getattr(c, 'not_valid_before_utc', None) or c.not_valid_before.replace(tzinfo=datetime.timezone.utc); "
        "sys.exit(0 if end - datetime.datetime.now(datetime.timezone.utc) > (end - start) / 6 else 1)"
    )
    return ["python3", "-c", script]


class Proxy(pulumi.ComponentResource):
    container: docker.Container

    def __init__(
        self,
        name: str,
        ctx: StackContext,
        data_volumes: Mapping[str, docker.Volume],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("stories:platform:Proxy", name, None, opts)
        stack, settings, topo, versions, networks, _ = ctx
        child = pulumi.ResourceOptions(parent=self)
        key = tls.PrivateKey("fallback-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        fallback = tls.SelfSignedCert(
            "fallback-cert",
            private_key_pem=key.private_key_pem,
            validity_period_hours=SELF_SIGNED_VALIDITY_HOURS,
            early_renewal_hours=30 * 24,
            dns_names=[settings.domain],
            allowed_uses=["digital_signature", "key_encipherment", "server_auth"],
            subject=tls.SelfSignedCertSubjectArgs(common_name=settings.domain, organization="1001 Stories"),
            opts=child,
        )
        acme = docker.Volume("acme-webroot", name=f"{stack}-acme-webroot", opts=child)
        letsencrypt = docker.Volume(
            "letsencrypt",
            name=f"{stack}-letsencrypt",
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=settings.host.retain_data_volumes),
        )
        self.letsencrypt = Mount(LETSENCRYPT_DIR, volume=letsencrypt)
        files = render_nginx(settings, topo, versions)
        fallback_dir = topo.nginx_fallback_tls_dir.removeprefix(topo.nginx_config_dir + "/")
        spec = ServiceSpec(
            service="nginx",
            image=pull("nginx", settings.images.nginx, self),
            image_ref=settings.images.nginx,
            resources=settings.proxy.resources,
            # The domain as an alias: a peer on the edge network (certbot's self-check, an ACME test
            # server) reaches the site by its public name.
            networks=[Attachment(networks.edge, ["nginx", settings.domain]), Attachment(networks.app, ["nginx"])],
            entrypoint=["/bin/sh", f"{topo.nginx_config_dir}/start.sh"],
            user=f"{NGINX_UID}:{NGINX_UID}",
            upload_dirs=[
                UploadDir(
                    topo.nginx_config_dir,
                    [
                        Upload("nginx.conf", files["nginx.conf"]),
                        Upload("start.sh", files["start.sh"], executable=True),
                        Upload(f"{fallback_dir}/fullchain.pem", fallback.cert_pem),
                        Upload(f"{fallback_dir}/privkey.pem", pulumi.Output.secret(key.private_key_pem), secret=True),
                    ],
                    owner=str(NGINX_UID),
                )
            ],
            mounts=[
                # The app's data directories nginx serves (app.dataDirs with a urlPath), read-only.
                *(
                    Mount(f"{topo.nginx_data_dir}/{served.name}", volume=data_volumes[served.name], read_only=True)
                    for served in served_data_dirs(settings)
                ),
                Mount(topo.nginx_acme_dir, volume=acme, read_only=True),
                Mount(LETSENCRYPT_DIR, volume=letsencrypt, read_only=True),
            ],
            tmpfs={"/tmp": "rw,noexec,nosuid,size=64m"},
            ports=[
                Port(topo.nginx_http_port, settings.proxy.http_host_port, str(settings.proxy.host_ip)),
                Port(topo.nginx_https_port, settings.proxy.https_host_port, str(settings.proxy.host_ip)),
            ],
            healthcheck=Healthcheck(healthchecks.nginx(topo), interval="15s", start_period="10s"),
            # A new nginx.conf is checked and reloaded by start.sh's loop: no restart, no lost request.
            reloaded=["nginx.conf"],
            stop_signal="SIGQUIT",  # graceful: finish in-flight requests
            stop_timeout_seconds=30,
        )
        self.container = HardenedContainer("nginx", stack, spec, pulumi.ResourceOptions(parent=self)).container
        if settings.proxy.tls.mode == "letsencrypt":
            self._certbot(stack, settings, topo, networks, acme, letsencrypt)
        self.register_outputs({"container": self.container.name})

    def _certbot(
        self,
        stack: str,
        settings: Settings,
        topo: Topology,
        networks: Networks,
        acme: docker.Volume,
        letsencrypt: docker.Volume,
    ) -> None:
        tls_settings = settings.proxy.tls
        uploads = [Upload("certbot.sh", render_certbot(settings, topo)["certbot.sh"], executable=True)]
        env: dict[str, pulumi.Input[str]] = {}
        if tls_settings.acme_ca_certificate_pem:
            uploads.append(Upload(ACME_CA_FILE, tls_settings.acme_ca_certificate_pem))
            env["REQUESTS_CA_BUNDLE"] = f"{CERTBOT_DIR}/{ACME_CA_FILE}"  # certbot talks to ACME with requests
        spec = ServiceSpec(
            service="certbot",
            image=pull("certbot", settings.images.certbot, self),
            image_ref=settings.images.certbot,
            resources=settings.proxy.certbot_resources,
            networks=[Attachment(networks.edge, ["certbot"])],
            entrypoint=["/bin/sh", f"{CERTBOT_DIR}/certbot.sh"],
            env=env,
            upload_dirs=[UploadDir(CERTBOT_DIR, uploads)],
            mounts=[Mount(topo.nginx_acme_dir, volume=acme), Mount(LETSENCRYPT_DIR, volume=letsencrypt)],
            tmpfs={
                "/tmp": "rw,noexec,nosuid,size=32m",
                "/var/log/letsencrypt": "rw,noexec,nosuid,size=16m",
                "/var/lib/letsencrypt": "rw,noexec,nosuid,size=16m",
            },
            cap_add={"CHOWN": "the deploy hook gives the key to nginx's uid; the backup group gets read access"},
            healthcheck=Healthcheck(certbot_healthcheck(topo), interval="1m", start_period="15m"),
        )
        HardenedContainer("certbot", stack, spec, pulumi.ResourceOptions(parent=self))
