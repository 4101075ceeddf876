"""Synthesize the Terraform path: ``uv run python terraform/main.py`` from ``infra/``
writes ``terraform/cdktf.out/stacks/emporium-<env>/cdk.tf.json`` for each environment."""

from pathlib import Path

from emporium.infra.terraform_stack import build_app

build_app(outdir=str(Path(__file__).parent / "cdktf.out")).synth()
