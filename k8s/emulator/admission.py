"""What the API server checks and fills in before a pod is stored.

Validation answers 422 Invalid (or 400), admission plugins answer 403 Forbidden, exactly as a
real server does; only the checks quotaflow's pods can trip are implemented.
"""

from __future__ import annotations

import re
from typing import Any

from k8s.emulator import status
from k8s.emulator.quantities import parse_quantity

DNS_SUBDOMAIN = re.compile(
    r"^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*$"
)
DNS_LABEL = re.compile(r"^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
LABEL_NAME = re.compile(r"^[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?$")

_RESTART_POLICIES = ("Always", "OnFailure", "Never")
_RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
_DEFAULT_TOLERATIONS = [
    {
        "key": "node.kubernetes.io/not-ready",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    },
    {
        "key": "node.kubernetes.io/unreachable",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    },
]

Cause = tuple[str, str, str]


def check_name(kind: str, meta: dict[str, Any]) -> list[Cause]:
    name = meta.get("name") or ""
    if not name:
        return [
            (
                "FieldValueRequired",
                "metadata.name",
                "Required value: name or generateName is required",
            )
        ]
    if len(name) > 253 or not DNS_SUBDOMAIN.match(name):
        return [
            (
                "FieldValueInvalid",
                "metadata.name",
                f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower '
                "case alphanumeric characters, '-' or '.', and must start and end with an "
                "alphanumeric character",
            )
        ]
    return []


def check_labels(meta: dict[str, Any]) -> list[Cause]:
    causes: list[Cause] = []
    for key, value in (meta.get("labels") or {}).items():
        name = str(key).rsplit("/", 1)[-1]
        if not LABEL_NAME.match(name) or len(name) > 63:
            causes.append(
                (
                    "FieldValueInvalid",
                    "metadata.labels",
                    f'Invalid value: "{key}": name part must be valid',
                )
            )
        if not isinstance(value, str) or len(value) > 63 or not LABEL_VALUE.match(value):
            causes.append(
                (
                    "FieldValueInvalid",
                    "metadata.labels",
                    f'Invalid value: "{value}": a valid label must be an empty string or consist '
                    "of alphanumeric characters, '-', '_' or '.', and must start and end with an "
                    "alphanumeric character",
                )
            )
    return causes


def _check_resources(path: str, resources: dict[str, Any]) -> list[Cause]:
    causes: list[Cause] = []
    requests = resources.get("requests") or {}
    limits = resources.get("limits") or {}
    parsed: dict[str, dict[str, Any]] = {"requests": {}, "limits": {}}
    for part, values in (("requests", requests), ("limits", limits)):
        for resource, value in values.items():
            try:
                parsed[part][resource] = parse_quantity(value)
            except ValueError as exc:
                causes.append(
                    ("FieldValueInvalid", f"{path}.{part}[{resource}]", f"Invalid value: {exc}")
                )
    if causes:
        return causes
    for resource in set(parsed["requests"]) | set(parsed["limits"]):
        request = parsed["requests"].get(resource)
        limit = parsed["limits"].get(resource)
        # Extended resources such as nvidia.com/gpu cannot be overcommitted.
        extended = "/" in resource and not resource.startswith(("kubernetes.io/", "requests."))
        if extended:
            for part, quantity in (("requests", request), ("limits", limit)):
                if quantity is not None and quantity != quantity.to_integral_value():
                    causes.append(
                        (
                            "FieldValueInvalid",
                            f"{path}.{part}[{resource}]",
                            "Invalid value: must be an integer",
                        )
                    )
            if request is not None and limit is None:
                causes.append(
                    (
                        "FieldValueRequired",
                        f"{path}.limits",
                        "Required value: Limit must be set for non overcommitable resources",
                    )
                )
            elif request is not None and limit is not None and request != limit:
                causes.append(
                    (
                        "FieldValueInvalid",
                        f"{path}.requests[{resource}]",
                        f"Invalid value: must be equal to {resource} limit",
                    )
                )
        elif request is not None and limit is not None and request > limit:
            causes.append(
                (
                    "FieldValueInvalid",
                    f"{path}.requests",
                    f"Invalid value: must be less than or equal to {resource} limit",
                )
            )
    return causes


def validate_pod(pod: dict[str, Any]) -> None:
    """422 for what validation rejects (a missing container, a bad name, bad resources …)."""
    meta = pod.setdefault("metadata", {})
    spec = pod.get("spec")
    causes = check_name("Pod", meta) + check_labels(meta)
    if not isinstance(spec, dict):
        causes.append(("FieldValueRequired", "spec", "Required value"))
        raise status.invalid("Pod", meta.get("name", ""), causes)
    containers = spec.get("containers") or []
    if not containers:
        causes.append(("FieldValueRequired", "spec.containers", "Required value"))
    seen: set[str] = set()
    for group in ("initContainers", "containers"):
        for index, container in enumerate(spec.get(group) or []):
            path = f"spec.{group}[{index}]"
            cname = container.get("name") or ""
            if not cname:
                causes.append(("FieldValueRequired", f"{path}.name", "Required value"))
            elif not DNS_LABEL.match(cname) or len(cname) > 63:
                causes.append(("FieldValueInvalid", f"{path}.name", f'Invalid value: "{cname}"'))
            elif cname in seen:
                causes.append(
                    ("FieldValueDuplicate", f"{path}.name", f'Duplicate value: "{cname}"')
                )
            seen.add(cname)
            if not container.get("image"):
                causes.append(("FieldValueRequired", f"{path}.image", "Required value"))
            causes += _check_resources(f"{path}.resources", container.get("resources") or {})
    policy = spec.get("restartPolicy")
    if policy is not None and policy not in _RESTART_POLICIES:
        causes.append(
            ("FieldValueNotSupported", "spec.restartPolicy", f'Unsupported value: "{policy}"')
        )
    grace = spec.get("terminationGracePeriodSeconds")
    if grace is not None and (not isinstance(grace, int) or grace < 0):
        causes.append(
            (
                "FieldValueInvalid",
                "spec.terminationGracePeriodSeconds",
                "Invalid value: must be >= 0",
            )
        )
    if causes:
        raise status.invalid("Pod", meta.get("name", ""), causes)


def pod_security_violations(pod: dict[str, Any]) -> list[str]:
    """Why the pod breaks Pod Security Standards "restricted" (empty when it does not)."""
    spec = pod.get("spec") or {}
    pod_context = spec.get("securityContext") or {}
    containers = (spec.get("initContainers") or []) + (spec.get("containers") or [])
    found: list[str] = []
    host = [f"{k}=true" for k in ("hostNetwork", "hostPID", "hostIPC") if spec.get(k)]
    if host:
        found.append(f"host namespaces ({', '.join(host)})")
    for volume in spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        bad = sorted(kinds - _RESTRICTED_VOLUMES)
        if bad:
            found.append(
                f'restricted volume types (volume "{volume.get("name")}" uses restricted '
                f'volume type "{bad[0]}")'
            )
    for c in containers:
        ctx = c.get("securityContext") or {}
        name = c.get("name")
        if ctx.get("privileged"):
            found.append(
                f'privileged (container "{name}" must not set securityContext.privileged=true)'
            )
        if ctx.get("allowPrivilegeEscalation") is not False:
            found.append(
                f'allowPrivilegeEscalation != false (container "{name}" must set '
                "securityContext.allowPrivilegeEscalation=false)"
            )
        caps = ctx.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            found.append(
                f'unrestricted capabilities (container "{name}" must set '
                'securityContext.capabilities.drop=["ALL"])'
            )
        added = [cap for cap in caps.get("add") or [] if cap != "NET_BIND_SERVICE"]
        if added:
            found.append(
                f'unrestricted capabilities (container "{name}" must not include '
                f'"{added[0]}" in securityContext.capabilities.add)'
            )
        non_root = ctx.get("runAsNonRoot", pod_context.get("runAsNonRoot"))
        if non_root is not True:
            found.append(
                f'runAsNonRoot != true (pod or container "{name}" must set '
                "securityContext.runAsNonRoot=true)"
            )
        if ctx.get("runAsUser", pod_context.get("runAsUser")) == 0:
            found.append(f'runAsUser=0 (pod or container "{name}" must not set runAsUser=0)')
        seccomp = (ctx.get("seccompProfile") or pod_context.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(
                f'seccompProfile (pod or container "{name}" must set '
                'securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")'
            )
        if any(port.get("hostPort") for port in c.get("ports") or []):
            found.append(f'hostPort (container "{name}" uses hostPort)')
    return found


def admit_pod(
    pod: dict[str, Any], priority_classes: dict[str, dict[str, Any]], enforce_restricted: bool
) -> None:
    """The admission plugins quotaflow meets: Priority and PodSecurity (enforce=restricted)."""
    name = pod["metadata"].get("name", "")
    spec = pod["spec"]
    if enforce_restricted:
        violations = pod_security_violations(pod)
        if violations:
            raise status.forbidden(
                "pods", name, f'violates PodSecurity "restricted:latest": {", ".join(violations)}'
            )
    class_name = spec.get("priorityClassName")
    if class_name:
        priority_class = priority_classes.get(class_name)
        if priority_class is None:
            raise status.forbidden(
                "pods", name, f"no PriorityClass with name {class_name} was found"
            )
    else:
        priority_class = next(
            (pc for pc in priority_classes.values() if pc.get("globalDefault")), None
        )
        if priority_class is not None:
            spec["priorityClassName"] = priority_class["metadata"]["name"]
    spec["priority"] = int(priority_class["value"]) if priority_class else 0
    spec["preemptionPolicy"] = (priority_class or {}).get(
        "preemptionPolicy", "PreemptLowerPriority"
    )


def default_pod(pod: dict[str, Any]) -> None:
    """The defaults the API server writes into a new pod."""
    spec = pod["spec"]
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    tolerations = spec.setdefault("tolerations", [])
    for toleration in _DEFAULT_TOLERATIONS:
        if not any(t.get("key") == toleration["key"] for t in tolerations):
            tolerations.append(dict(toleration))
    for container in (spec.get("initContainers") or []) + spec["containers"]:
        image = str(container.get("image", ""))
        latest = ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")
        container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        resources = container.setdefault("resources", {})
        # Requests default to limits, as the API server does.
        if resources.get("limits"):
            requests = resources.setdefault("requests", {})
            for resource, value in resources["limits"].items():
                requests.setdefault(resource, value)
    pod["status"] = {"phase": "Pending", "qosClass": _qos_class(spec["containers"])}


def _qos_class(containers: list[dict[str, Any]]) -> str:
    resources = [c.get("resources") or {} for c in containers]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    guaranteed = all(
        all((r.get("limits") or {}).get(k) is not None for k in ("cpu", "memory"))
        and (r.get("requests") or {}).get("cpu") == (r.get("limits") or {}).get("cpu")
        and (r.get("requests") or {}).get("memory") == (r.get("limits") or {}).get("memory")
        for r in resources
    )
    return "Guaranteed" if guaranteed else "Burstable"
