"""The Kubernetes cluster: an existing one reached through a kubeconfig context, or EKS."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_eks as eks
import pulumi_kubernetes as k8s

from emporium.infra.settings import ClusterSettings, StackSettings

NODE_POLICIES = (
    "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
)
EBS_CSI_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"


@dataclass(frozen=True)
class ClusterArgs:
    environment: str
    cluster: ClusterSettings

    @classmethod
    def from_settings(cls, settings: StackSettings) -> ClusterArgs:
        return cls(environment=settings.environment, cluster=settings.cluster)


class Cluster(pulumi.ComponentResource):
    """Exposes ``provider`` for every Kubernetes resource of the stack: hand it to
    the other components in ``opts.providers``."""

    provider: k8s.Provider
    kubeconfig: pulumi.Output[str] | None

    def __init__(self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("emporium:platform:Cluster", name, None, opts)
        self.kubeconfig = None
        settings, environment = args.cluster, args.environment
        if settings.mode == "existing":
            self.provider = k8s.Provider(
                f"{name}-k8s",
                context=settings.context,
                enable_server_side_apply=True,
                opts=pulumi.ResourceOptions(parent=self),
            )
        else:
            self.provider = self._eks(name, settings, environment)
        self.register_outputs({"mode": settings.mode})

    def _eks(self, name: str, settings: ClusterSettings, environment: str) -> k8s.Provider:
        spec = settings.eks
        child = pulumi.ResourceOptions(parent=self)
        cluster_name = f"emporium-{environment}"
        tags = {"emporium.dev/environment": environment, "managed-by": "pulumi"}
        aws_provider = aws.Provider(f"{name}-aws", region=spec.region, opts=child)
        with_aws = pulumi.ResourceOptions(parent=self, provider=aws_provider)

        node_role = aws.iam.Role(
            f"{name}-node-role",
            assume_role_policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "ec2.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            ),
            tags=tags,
            opts=with_aws,
        )
        for index, policy_arn in enumerate(NODE_POLICIES):
            aws.iam.RolePolicyAttachment(
                f"{name}-node-policy-{index}",
                role=node_role.name,
                policy_arn=policy_arn,
                opts=with_aws,
            )

        cluster = eks.Cluster(
            f"{name}-eks",
            name=cluster_name,
            version=spec.version,
            vpc_id=spec.vpc_id or None,
            private_subnet_ids=spec.private_subnet_ids,
            public_subnet_ids=spec.public_subnet_ids or None,
            node_associate_public_ip_address=False,
            endpoint_private_access=True,
            endpoint_public_access=bool(spec.public_access_cidrs),
            public_access_cidrs=spec.public_access_cidrs or None,
            authentication_mode=eks.AuthenticationMode.API,
            skip_default_node_group=True,
            instance_roles=[node_role],
            create_oidc_provider=True,
            enabled_cluster_log_types=["api", "audit", "authenticator"],
            storage_classes={
                "gp3": eks.StorageClassArgs(
                    type="gp3",
                    default=True,
                    encrypted=True,
                    allow_volume_expansion=True,
                    volume_binding_mode="WaitForFirstConsumer",
                )
            },
            tags=tags,
            opts=with_aws,
        )
        eks.ManagedNodeGroup(
            f"{name}-nodes",
            cluster=cluster,
            node_role=node_role,
            instance_types=spec.instance_types,
            scaling_config=aws.eks.NodeGroupScalingConfigArgs(
                min_size=spec.min_nodes,
                desired_size=spec.desired_nodes,
                max_size=spec.max_nodes,
            ),
            disk_size=spec.disk_gib,
            subnet_ids=spec.private_subnet_ids,
            labels={"emporium.dev/environment": environment},
            tags=tags,
            opts=with_aws,
        )

        # PersistentVolumes for Kafka, Postgres and the observability stores.
        ebs_role = aws.iam.Role(
            f"{name}-ebs-csi-role",
            assume_role_policy=pulumi.Output.all(cluster.oidc_provider_arn, cluster.oidc_provider_url).apply(
                lambda values: _irsa_trust(values[0], values[1], "kube-system", "ebs-csi-controller-sa")
            ),
            tags=tags,
            opts=with_aws,
        )
        aws.iam.RolePolicyAttachment(
            f"{name}-ebs-csi-policy", role=ebs_role.name, policy_arn=EBS_CSI_POLICY, opts=with_aws
        )
        aws.eks.Addon(
            f"{name}-ebs-csi",
            cluster_name=cluster_name,
            addon_name="aws-ebs-csi-driver",
            service_account_role_arn=ebs_role.arn,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, provider=aws_provider, depends_on=[cluster]),
        )

        self.kubeconfig = pulumi.Output.secret(cluster.kubeconfig_json)
        return k8s.Provider(
            f"{name}-k8s",
            kubeconfig=cluster.kubeconfig_json,
            enable_server_side_apply=True,
            opts=child,
        )


def _irsa_trust(provider_arn: str, provider_url: str, namespace: str, service_account: str) -> str:
    issuer = provider_url.removeprefix("https://")
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Federated": provider_arn},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {
                        "StringEquals": {
                            f"{issuer}:sub": f"system:serviceaccount:{namespace}:{service_account}",
                            f"{issuer}:aud": "sts.amazonaws.com",
                        }
                    },
                }
            ],
        }
    )
