"""nginx at the edge: TLS termination, rate limits, caching headers, the only published ports; and
certbot, which obtains and renews the certificate by webroot when the stack uses Let's Encrypt."""

from __future__ import annotations

import pulumi
import pulumi_docker as docker
import pulumi_tls as tls

from components.container import Attachment, HardenedContainer, Healthcheck, Mount, Port, ServiceSpec, Upload, UploadDir
from components.context import StackContext
from components.images_resource import pull
from components.network import Networks
from components.settings import Settings
from configs import healthchecks
from configs.render import render_nginx
from configs.topology import Topology

NGINX_UID = "101"
LETSENCRYPT_DIR = "/etc/letsencrypt"
SELF_SIGNED_VALIDITY_HOURS = 365 * 24


def certbot_script(settings: Settings, topo: Topology) -> str:
    """Obtain the certificate once, then try renewal every renewIntervalHours. The deploy hook hands
    the key to nginx's uid (hence CAP_CHOWN) in the directory nginx's start script looks at."""
    tls_settings = settings.proxy.tls
    staging = " --staging" if tls_settings.acme_staging else ""
    hook = (
        f"install -D -o {NGINX_UID} -g {NGINX_UID} -m 0400 $RENEWED_LINEAGE/privkey.pem "
        f"{topo.letsencrypt_live_dir}/privkey.pem && "
        f"install -D -m 0444 $RENEWED_LINEAGE/fullchain.pem {topo.letsencrypt_live_dir}/fullchain.pem"
    )
    common = f"--webroot -w {topo.nginx_acme_dir} --non-interactive --deploy-hook '{hook}'{staging}"
    return (
        f"certbot certonly {common} --agree-tos --email {tls_settings.email} -d {settings.domain} "
        f"--keep-until-expiring; "
        f"while :; do sleep {tls_settings.renew_interval_hours * 3600}; certbot renew {common}; done"
    )


class Proxy(pulumi.ComponentResource):
    container: docker.Container

    def __init__(
        self,
        name: str,
        ctx: StackContext,
        books_volume: docker.Volume,
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
            networks=[Attachment(networks.edge, ["nginx"]), Attachment(networks.app, ["nginx"])],
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
                    owner=NGINX_UID,
                )
            ],
            mounts=[
                Mount(topo.nginx_books_dir, volume=books_volume, read_only=True),
                Mount(topo.nginx_acme_dir, volume=acme, read_only=True),
                Mount(LETSENCRYPT_DIR, volume=letsencrypt, read_only=True),
            ],
            tmpfs={"/tmp": "rw,noexec,nosuid,size=64m"},
            ports=[Port(topo.nginx_http_port, 80, "0.0.0.0"), Port(topo.nginx_https_port, 443, "0.0.0.0")],
            healthcheck=Healthcheck(healthchecks.nginx(topo), interval="15s", start_period="10s"),
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
        spec = ServiceSpec(
            service="certbot",
            image=pull("certbot", settings.images.certbot, self),
            image_ref=settings.images.certbot,
            resources=settings.proxy.certbot_resources,
            networks=[Attachment(networks.edge, ["certbot"])],
            entrypoint=["/bin/sh", "-c", certbot_script(settings, topo)],
            mounts=[Mount(topo.nginx_acme_dir, volume=acme), Mount(LETSENCRYPT_DIR, volume=letsencrypt)],
            tmpfs={
                "/tmp": "rw,noexec,nosuid,size=32m",
                "/var/log/letsencrypt": "rw,noexec,nosuid,size=16m",
                "/var/lib/letsencrypt": "rw,noexec,nosuid,size=16m",
            },
            cap_add={"CHOWN": "the deploy hook gives the renewed private key to nginx's uid"},
            # Healthy while no certificate it manages is older than 80 days (renewal happens at 60).
            healthcheck=Healthcheck(
                ["sh", "-c", f'test -z "$(find {LETSENCRYPT_DIR}/archive -name "cert*.pem" -mtime +80 2>/dev/null)"'],
                interval="1h",
                start_period="5m",
            ),
        )
        HardenedContainer("certbot", stack, spec, pulumi.ResourceOptions(parent=self))
