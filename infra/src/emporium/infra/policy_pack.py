"""The pulumi-policy objects of Emporium's policy pack, built from the validators in
``emporium.infra.policies``. ``infra/policy/__main__.py`` serves them.
"""

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from emporium.infra import policies


def _resource_policy(info: policies.PolicyInfo) -> ResourceValidationPolicy:
    validator = policies.RESOURCE_VALIDATORS[info.name]

    def validate(args: ResourceValidationArgs, report_violation) -> None:
        if info is policies.RESTRICTED_NAMESPACES:
            privileged = args.get_config().get("privilegedNamespaces")
            policies.validate_restricted_namespace(
                args.resource_type, args.props, report_violation, privileged
            )
        else:
            validator(args.resource_type, args.props, report_violation)

    config_schema = None
    if info is policies.RESTRICTED_NAMESPACES:
        config_schema = PolicyConfigSchema(
            properties={
                "privilegedNamespaces": {
                    "type": "array",
                    "items": {"type": "string"},
                    "default": policies.DEFAULT_PRIVILEGED_NAMESPACES,
                }
            }
        )
    return ResourceValidationPolicy(
        name=info.name,
        description=info.description,
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
        config_schema=config_schema,
    )


def _validate_outputs(args: StackValidationArgs, report_violation) -> None:
    for resource in args.resources:
        if resource.resource_type == "pulumi:pulumi:Stack":
            secret_outputs = args.get_config().get("secretOutputs")
            policies.validate_stack_outputs(resource.props, report_violation, secret_outputs)


def build_policies() -> list[ResourceValidationPolicy | StackValidationPolicy]:
    return [
        *(_resource_policy(info) for info in policies.ALL_POLICIES),
        StackValidationPolicy(
            name="secret-stack-outputs",
            description="Credentials leave the stack only through outputs the program marks secret.",
            validate=_validate_outputs,
            enforcement_level=EnforcementLevel.MANDATORY,
        ),
    ]
