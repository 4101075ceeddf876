"""Emporium's platform layer: the cluster, Kafka, Postgres, observability and the
application namespaces that the chart in ``charts/emporium`` is deployed into.

``model`` computes every specification from the stack settings as plain data;
the Pulumi components and the CDK Terrain stack only render it.
"""
