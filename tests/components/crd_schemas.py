"""Structural validation of every object the components render.

Core kinds go through kubernetes_validate (the cluster's OpenAPI schemas, strict: unknown fields
fail). Gateway API and Istio kinds are CRDs that the core schemas do not know, so their
structure is written down here as JSON Schema, field by field from the projects' API docs:

- HTTPRoute, gateway.networking.k8s.io/v1 (gateway-api apis/v1/httproute_types.go,
  shared_types.go): required fields, enums, list limits, name patterns, and the CEL rules we can
  hit (a Service backendRef needs a port; a RequestMirror filter needs requestMirror; percent
  and fraction exclude each other; at most 128 matches per route).
- VirtualService and DestinationRule, networking.istio.io/v1 (istio/api networking
  virtual_service.proto, destination_rule.proto, and istioctl validation: lowercase header
  names, DNS-label subset names, split weights summing to 100, mirrorPercentage 0..100).

Every object level lists all the fields its docs define and rejects others, so a misspelt field
fails here instead of being pruned silently by the API server.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import kubernetes_validate

KUBERNETES_VERSION = "1.30"

_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_HOSTNAME = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_HEADER_NAME = r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$"


def _obj(properties: dict[str, Any], required: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
        **extra,
    }


def _array(items: dict[str, Any], max_items: int | None = None, min_items: int = 0) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "array", "items": items, "minItems": min_items}
    if max_items is not None:
        schema["maxItems"] = max_items
    return schema


def _string(pattern: str | None = None, min_length: int = 1, max_length: int = 253) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "minLength": min_length, "maxLength": max_length}
    if pattern:
        schema["pattern"] = pattern
    return schema


_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_ANY_OBJECT = {"type": "object"}  # documented fields we never set: checked as objects only

_METADATA = _obj(
    {
        "name": _string(_DNS_SUBDOMAIN),
        "namespace": _string(_DNS_LABEL, max_length=63),
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
    },
    required=("name",),
)


def _resource(api_version: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return _obj(
        {"apiVersion": {"const": api_version}, "kind": {"const": kind}, "metadata": _METADATA, "spec": spec},
        required=("apiVersion", "kind", "metadata", "spec"),
    )


# --- Gateway API v1 HTTPRoute -----------------------------------------------------------------

_PORT = {"type": "integer", "minimum": 1, "maximum": 65535}

_BACKEND_OBJECT_REF = {
    "group": {"type": "string", "maxLength": 253},
    "kind": _string(max_length=63),
    "name": _string(),
    "namespace": _string(_DNS_LABEL, max_length=63),
    "port": _PORT,
}
# CEL "Must have port for Service reference": group "" and kind Service are the defaults.
_SERVICE_NEEDS_PORT = {
    "if": {
        "properties": {"group": {"const": ""}, "kind": {"const": "Service"}},
    },
    "then": {"required": ["port"]},
}

_BACKEND_REF = _obj(_BACKEND_OBJECT_REF, required=("name",), **_SERVICE_NEEDS_PORT)

_HTTP_ROUTE_FILTER = _obj(
    {
        "type": {
            "enum": [
                "RequestHeaderModifier",
                "ResponseHeaderModifier",
                "RequestMirror",
                "RequestRedirect",
                "URLRewrite",
                "ExtensionRef",
                "CORS",
            ]
        },
        "requestHeaderModifier": _ANY_OBJECT,
        "responseHeaderModifier": _ANY_OBJECT,
        "requestMirror": _obj(
            {
                "backendRef": _BACKEND_REF,
                "percent": {"type": "integer", "minimum": 0, "maximum": 100},
                "fraction": _obj(
                    {
                        "numerator": {"type": "integer", "minimum": 0},
                        "denominator": {"type": "integer", "minimum": 1},
                    },
                    required=("numerator",),
                ),
            },
            required=("backendRef",),
            # CEL: only one of percent or fraction.
            **{"not": {"required": ["percent", "fraction"]}},
        ),
        "requestRedirect": _ANY_OBJECT,
        "urlRewrite": _ANY_OBJECT,
        "cors": _ANY_OBJECT,
        "extensionRef": _ANY_OBJECT,
    },
    required=("type",),
    # CEL: filter.requestMirror must be specified for RequestMirror filter.type (and vice versa).
    allOf=[
        {"if": {"properties": {"type": {"const": "RequestMirror"}}}, "then": {"required": ["requestMirror"]}},
        {"if": {"required": ["requestMirror"]}, "then": {"properties": {"type": {"const": "RequestMirror"}}}},
    ],
)

_HTTP_ROUTE_MATCH = _obj(
    {
        "path": _obj(
            {
                "type": {"enum": ["Exact", "PathPrefix", "RegularExpression"]},
                "value": {"type": "string", "maxLength": 1024},
            }
        ),
        "headers": _array(
            _obj(
                {
                    "type": {"enum": ["Exact", "RegularExpression"]},
                    "name": _string(_HEADER_NAME, max_length=256),
                    "value": _string(min_length=1, max_length=4096),
                },
                required=("name", "value"),
            ),
            max_items=16,
        ),
        "queryParams": _array(_ANY_OBJECT, max_items=16),
        "method": {"enum": ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]},
    }
)

HTTP_ROUTE = _resource(
    "gateway.networking.k8s.io/v1",
    "HTTPRoute",
    _obj(
        {
            "parentRefs": _array(
                _obj(
                    {
                        "group": {"type": "string", "maxLength": 253},
                        "kind": _string(max_length=63),
                        "namespace": _string(_DNS_LABEL, max_length=63),
                        "name": _string(),
                        "sectionName": _string(_DNS_SUBDOMAIN),
                        "port": _PORT,
                    },
                    required=("name",),
                ),
                max_items=32,
            ),
            "hostnames": _array(_string(_HOSTNAME), max_items=16),
            "rules": _array(
                _obj(
                    {
                        "name": _string(_DNS_SUBDOMAIN),
                        "matches": _array(_HTTP_ROUTE_MATCH, max_items=64),
                        "filters": _array(_HTTP_ROUTE_FILTER, max_items=16),
                        "backendRefs": _array(
                            _obj(
                                {
                                    **_BACKEND_OBJECT_REF,
                                    "weight": {"type": "integer", "minimum": 0, "maximum": 1000000},
                                    "filters": _array(_HTTP_ROUTE_FILTER, max_items=16),
                                },
                                required=("name",),
                                **_SERVICE_NEEDS_PORT,
                            ),
                            max_items=16,
                        ),
                        "timeouts": _ANY_OBJECT,
                        "retry": _ANY_OBJECT,
                        "sessionPersistence": _ANY_OBJECT,
                    }
                ),
                max_items=16,
                min_items=1,
            ),
        }
    ),
)

# --- Istio networking.istio.io/v1 -----------------------------------------------------------

_STRING_MATCH = {
    "type": "object",
    "properties": {"exact": {"type": "string"}, "prefix": {"type": "string"}, "regex": {"type": "string"}},
    "additionalProperties": False,
    "minProperties": 1,
    "maxProperties": 1,  # a oneof
}

_DESTINATION = _obj(
    {
        "host": _string(max_length=255),
        "subset": _string(_DNS_LABEL, max_length=63),
        "port": _obj({"number": _PORT}),
    },
    required=("host",),
)

_HTTP_MATCH_REQUEST = _obj(
    {
        "name": {"type": "string"},
        "uri": _STRING_MATCH,
        "scheme": _STRING_MATCH,
        "method": _STRING_MATCH,
        "authority": _STRING_MATCH,
        # istioctl: header names must be lowercase.
        "headers": {
            "type": "object",
            "propertyNames": {"pattern": r"^[a-z0-9!#$%&'*+\-.^_`|~]+$"},
            "additionalProperties": _STRING_MATCH,
        },
        "port": _PORT,
        "sourceLabels": _STRING_MAP,
        "gateways": _array({"type": "string"}),
        "queryParams": {"type": "object", "additionalProperties": _STRING_MATCH},
        "ignoreUriCase": {"type": "boolean"},
        "withoutHeaders": {"type": "object", "additionalProperties": _STRING_MATCH},
        "sourceNamespace": {"type": "string"},
        "statPrefix": {"type": "string"},
    }
)

_ISTIO_HTTP_ROUTE = _obj(
    {
        "name": {"type": "string"},
        "match": _array(_HTTP_MATCH_REQUEST),
        "route": _array(
            _obj(
                {
                    "destination": _DESTINATION,
                    "weight": {"type": "integer", "minimum": 0},
                    "headers": _ANY_OBJECT,
                },
                required=("destination",),
            )
        ),
        "redirect": _ANY_OBJECT,
        "directResponse": _ANY_OBJECT,
        "delegate": _ANY_OBJECT,
        "rewrite": _ANY_OBJECT,
        "timeout": {"type": "string"},
        "retries": _ANY_OBJECT,
        "fault": _ANY_OBJECT,
        "mirror": _DESTINATION,
        "mirrors": _array(_ANY_OBJECT),
        "mirrorPercentage": _obj({"value": {"type": "number", "minimum": 0, "maximum": 100}}),
        "corsPolicy": _ANY_OBJECT,
        "headers": _ANY_OBJECT,
    },
    required=(),
    **{"not": {"required": ["mirror", "mirrors"]}},
)

VIRTUAL_SERVICE = _resource(
    "networking.istio.io/v1",
    "VirtualService",
    _obj(
        {
            "hosts": _array(_string(max_length=255), min_items=1),
            "gateways": _array(_string()),
            "http": _array(_ISTIO_HTTP_ROUTE),
            "tls": _array(_ANY_OBJECT),
            "tcp": _array(_ANY_OBJECT),
            "exportTo": _array({"type": "string"}),
        },
        required=("hosts",),
    ),
)

DESTINATION_RULE = _resource(
    "networking.istio.io/v1",
    "DestinationRule",
    _obj(
        {
            "host": _string(max_length=255),
            "trafficPolicy": _ANY_OBJECT,
            "subsets": _array(
                _obj(
                    {
                        "name": _string(_DNS_LABEL, max_length=63),
                        "labels": _STRING_MAP,
                        "trafficPolicy": _ANY_OBJECT,
                    },
                    required=("name",),
                )
            ),
            "exportTo": _array({"type": "string"}),
            "workloadSelector": _ANY_OBJECT,
        },
        required=("host",),
    ),
)

CRD_SCHEMAS = {
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): HTTP_ROUTE,
    ("networking.istio.io/v1", "VirtualService"): VIRTUAL_SERVICE,
    ("networking.istio.io/v1", "DestinationRule"): DESTINATION_RULE,
}


class InvalidObject(AssertionError):
    pass


def validate(obj: dict[str, Any]) -> None:
    """Raise InvalidObject naming the first problem of a rendered Kubernetes object."""
    key = (obj.get("apiVersion"), obj.get("kind"))
    if key not in CRD_SCHEMAS:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise InvalidObject(
                f"{key[1]} {obj['metadata'].get('name')}: {exc.message} at {list(exc.path)}"
            ) from None
        return
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(CRD_SCHEMAS[key]).iter_errors(obj)
    )
    if error is not None:
        message = (
            error.message if len(error.message) < 300 else error.message[:140] + " … " + error.message[-140:]
        )
        raise InvalidObject(f"{key[1]}: {message} at {'/'.join(map(str, error.absolute_path))}")
    if key[1] == "HTTPRoute":
        matches = sum(len(rule.get("matches", [{}])) for rule in obj["spec"].get("rules", []))
        if matches > 128:  # CEL rule across rules
            raise InvalidObject(f"HTTPRoute: {matches} matches across its rules, at most 128")
    if key[1] == "VirtualService":
        for route in obj["spec"].get("http", []):
            weights = [d.get("weight", 0) for d in route.get("route", [])]
            if len(weights) > 1 and sum(weights) != 100:  # istioctl: total destination weight
                raise InvalidObject(
                    f"VirtualService {route.get('name')}: route weights sum to {sum(weights)}, not 100"
                )
