"""Declare REST endpoints once: the same declaration validates input and documents it.

`endpoint(...)` wraps a view so its body or query string is validated by a pydantic schema
(refusals use the JSON error shape) and records it in the OpenAPI document served at
/api/openapi.json.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, current_app, request
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

from ..domain.accounts import Principal, authenticate_token
from ..errors import Invalid, Unauthorized, invalid_from_validation
from ..schemas import ErrorOut

_operations: list[dict[str, Any]] = []


def bearer_principal() -> Principal:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization: Bearer <token> is required")
    cfg = current_app.config
    return authenticate_token(token.strip(), cfg["SECRET_KEY"], cfg["TOKEN_TTL_SECONDS"])


def endpoint(
    bp: Blueprint,
    method: str,
    path: str,
    *,
    summary: str,
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    path_params: type[BaseModel] | None = None,
    response: type[BaseModel] | None = None,
    status: int = 200,
    auth: bool = True,
    errors: tuple[int, ...] = (),
    also: tuple[int, ...] = (),
) -> Callable:
    """Route, validate and document one endpoint.

    The view is called with (principal if auth, body or query model if declared, **path args).
    `path_params` validates the path's variables (each a field of that model), so a URL
    names only what a payload could name.
    A view answering with another success status than `status` (listed in `also`, same
    response schema) returns (body, status).
    """
    _operations.append(
        dict(
            method=method.lower(),
            path=(bp.url_prefix or "") + path,
            summary=summary,
            body=body,
            query=query,
            path_params=path_params,
            response=response,
            status=status,
            auth=auth,
            errors=errors,
            also=also,
        )
    )

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def wrapper(**path_args: Any) -> Any:
            args: list[Any] = []
            if auth:
                args.append(bearer_principal())
            try:
                if body is not None:
                    try:
                        data = request.get_json(silent=True)
                    except RecursionError:  # not a ValueError, so `silent` lets it through
                        raise Invalid("the request body is nested too deeply") from None
                    if data is None:
                        raise Invalid("the request body must be a JSON object")
                    args.append(body.model_validate(data))
                if query is not None:
                    args.append(query.model_validate(request.args.to_dict()))
                if path_params is not None:
                    path_args = dict(path_params.model_validate(path_args))
            except ValidationError as exc:
                raise invalid_from_validation(exc) from None
            result = view(*args, **path_args)
            if isinstance(result, tuple):
                return result
            if status == 204:
                return "", 204
            return (result, status) if status != 200 else result

        bp.add_url_rule(path, view_func=wrapper, methods=[method])
        return wrapper

    return decorate


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of every declared endpoint."""
    models = {ErrorOut}
    for op in _operations:
        models.update(
            m for m in (op["body"], op["query"], op["path_params"], op["response"]) if m is not None
        )
    _, schema = models_json_schema(
        [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)],
        ref_template="#/components/schemas/{model}",
    )
    components = schema.get("$defs", {})

    def ref(model: type[BaseModel]) -> dict:
        return {"$ref": f"#/components/schemas/{model.__name__}"}

    paths: dict[str, dict] = {}
    for op in _operations:
        oas_path = op["path"].replace("<", "{").replace(">", "}")
        item: dict[str, Any] = {"summary": op["summary"], "responses": {}}
        path_schema = (
            components[op["path_params"].__name__]["properties"] if op["path_params"] else {}
        )
        params = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": path_schema.get(name, {"type": "string"}),
            }
            for name in _path_params(op["path"])
        ]
        if op["query"] is not None:
            for name, field in op["query"].model_fields.items():
                params.append(
                    {
                        "name": name,
                        "in": "query",
                        "required": field.is_required(),
                        "schema": components[op["query"].__name__]["properties"][name],
                    }
                )
        if params:
            item["parameters"] = params
        if op["body"] is not None:
            item["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": ref(op["body"])}},
            }
        ok: dict[str, Any] = {"description": "No content" if op["status"] == 204 else "OK"}
        if op["response"] is not None:
            ok["content"] = {"application/json": {"schema": ref(op["response"])}}
        for success in (op["status"], *op["also"]):
            item["responses"][str(success)] = ok
        codes = set(op["errors"]) | {400} | ({401} if op["auth"] else set())
        for code in sorted(codes):
            item["responses"][str(code)] = {
                "description": "Error",
                "content": {"application/json": {"schema": ref(ErrorOut)}},
            }
        if op["auth"]:
            item["security"] = [{"bearer": []}]
        paths.setdefault(oas_path, {})[op["method"]] = item
    return {
        "openapi": "3.1.0",
        "info": {"title": "Chat API", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _path_params(path: str) -> list[str]:
    out = []
    for part in path.split("/"):
        if part.startswith("<") and part.endswith(">"):
            out.append(part[1:-1].split(":")[-1])
    return out
