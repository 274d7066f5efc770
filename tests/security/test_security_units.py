"""The pieces without a stack: id rules, auth settings that fail fast, the policy, the key file, the warning."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest
from security_stack import AUDIENCE, ISSUER, TestIdP

from wikimem_common import identifiers
from wikimem_common.config import ConfigError
from wikimem_common.errors import InvalidArgument, PermissionDenied
from wikimem_orchestrator.auth.apikeys import ApiKeyStore, digest, mint
from wikimem_orchestrator.auth.authenticator import Authenticator
from wikimem_orchestrator.auth.identity import API_KEY, JWT, Identity, Unauthenticated, anonymous
from wikimem_orchestrator.auth.policy import Policy
from wikimem_orchestrator.auth.settings import AuthConfig, loopback, parse_writers
from wikimem_orchestrator.auth.tokens import claim
from wikimem_orchestrator.config import OrchestratorConfig
from wikimem_orchestrator.server import make_authenticator


@pytest.mark.parametrize("good", ["handbook/vpn.md", "people/Résumé.md", "Москва/отчёт.md", "日本語/ページ.md",
                                  "a b/c.md", "ελληνικά.md", "x-1_2.md", "team/\U0001f469\u200d\U0001f4bb.md"])
def test_ordinary_ids_pass(good: str) -> None:
    assert identifiers.doc_id(good, 512) == good


def test_ids_are_nfc() -> None:
    assert identifiers.doc_id("cafe\u0301.md", 512) == "caf\u00e9.md"


@pytest.mark.parametrize(("bad", "named"), [
    ("fmla\u200b.md", "U+200B ZERO WIDTH SPACE"), ("a\u200d.md", "U+200D"), ("\u202eabc", "U+202E"),
    ("a\u202a.md", "U+202A"), ("a\u2067.md", "U+2067"), ("a\u00ad.md", "U+00AD SOFT HYPHEN"),
    ("a\ufeff.md", "U+FEFF"), ("a\u0007.md", "U+0007"), ("a\u2028.md", "U+2028"), ("a\u3000b.md", "U+3000"),
    ("p\u0430ypal.md", "U+0430 CYRILLIC"), ("\U0001d41a.md", "U+1D41A MATHEMATICAL BOLD"), ("a\u2800.md", "U+2800"),
    ("\ufb01le.md", "U+FB01 LATIN SMALL LIGATURE FI"), (" lead.md", "white space"),
])
def test_invisible_and_look_alike_ids_are_refused(bad: str, named: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        identifiers.doc_id(bad, 512)
    assert named in info.value.message


def test_revision_bounds() -> None:
    assert identifiers.revision(2**63 - 1) == 2**63 - 1
    for value in (2**63, 2**64 - 1, -1):
        with pytest.raises(InvalidArgument, match="2\\*\\*63-1"):
            identifiers.revision(value)


def jwt_config(tmp_path: Path, **overrides: object) -> AuthConfig:
    idp = TestIdP(tmp_path)
    config = AuthConfig(modes=("jwt",), jwks_file=idp.jwks_file, jwt_issuer=ISSUER, jwt_audience=(AUDIENCE,))
    return dataclasses.replace(config, **overrides)  # type: ignore[arg-type]


@pytest.mark.parametrize(("overrides", "says"), [
    ({"jwt_issuer": ""}, "WIKIMEM_JWT_ISSUER"),
    ({"jwt_audience": ()}, "WIKIMEM_JWT_AUDIENCE"),
    ({"jwks_file": None}, "exactly one of WIKIMEM_JWKS_FILE"),
    ({"jwks_url": "https://idp.test/certs"}, "exactly one of"),
    ({"jwks_file": Path("/nonexistent/jwks.json")}, "not a readable file"),
    ({"algorithms": ("HS256",)}, "WIKIMEM_JWT_ALGORITHMS"),
    ({"modes": ("jwt", "saml")}, "use off, jwt, apikey"),
    ({"modes": ("jwt", "apikey")}, "WIKIMEM_API_KEYS_FILE"),
    ({"modes": (), "api_keys_file": None}, "does not include jwt"),
    ({"generative_readers": "maybe"}, "WIKIMEM_GENERATIVE_READERS"),
])
def test_inconsistent_auth_settings_fail_fast(tmp_path: Path, overrides: dict[str, object], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        jwt_config(tmp_path, **overrides).validate()


def test_settings_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"keys": []}))
    monkeypatch.setenv("WIKIMEM_AUTH", "apikey")
    monkeypatch.setenv("WIKIMEM_API_KEYS_FILE", str(keys))
    monkeypatch.setenv("WIKIMEM_WRITERS", "eng=writer-eng,team-eng;*=admin")
    config = AuthConfig.from_env()
    assert config.modes == ("apikey",) and config.writers == {"eng": {"writer-eng", "team-eng"}, "*": {"admin"}}
    monkeypatch.setenv("WIKIMEM_WRITERS", "eng")
    with pytest.raises(ConfigError, match="COLLECTION=ROLE_OR_GROUP"):
        AuthConfig.from_env()
    with pytest.raises(ConfigError, match="COLLECTION="):
        parse_writers("=x")


def test_policy() -> None:
    policy = Policy(AuthConfig(modes=("apikey",), api_keys_file=Path("k"),
                               writers=parse_writers("eng=writer-eng,team-eng;*=admin")))
    eng = Identity(kind=JWT, subject="a", groups=("team-eng",), roles=frozenset())
    policy.require_writer(eng, "eng")
    with pytest.raises(PermissionDenied, match="may not write collection 'hr'"):
        policy.require_writer(eng, "hr")
    policy.require_writer(Identity(kind=API_KEY, subject="ops", roles=frozenset({"admin"})), "hr")
    with pytest.raises(PermissionDenied, match="may not restrict"):
        policy.require_acl_member(eng, ["legal"])
    policy.require_acl_member(eng, ["legal", "team-eng"])
    with pytest.raises(PermissionDenied, match="llm"):
        policy.require_reader(eng, "local-llm")
    policy.require_reader(Identity(kind=JWT, subject="b", roles=frozenset({"llm"})), "local-llm")
    policy.require_reader(eng, "extractive")
    # auth off: no roles, a switch for the generative readers; claimed groups never make an admin
    off = Policy(AuthConfig(generative_readers="denied"))
    off.require_writer(anonymous(), "hr")
    with pytest.raises(PermissionDenied, match="WIKIMEM_GENERATIVE_READERS=denied"):
        off.require_reader(anonymous(("admin",)), "openai")
    Policy(AuthConfig()).require_reader(anonymous(), "local-llm")
    assert not off.is_admin(anonymous(("admin",)))


def test_claim_paths() -> None:
    claims = {"groups": ["a"], "realm_access": {"roles": ["writer"]}}
    assert claim(claims, "realm_access.roles") == ["writer"] and claim(claims, "realm_access.x") is None


def test_api_key_file_yaml_and_errors(tmp_path: Path) -> None:
    key = mint()
    path = tmp_path / "keys.yaml"
    path.write_text(f"keys:\n  - id: bot\n    sha256: {digest(key)}\n    groups: [eng]\n    roles: [writer]\n")
    identity = ApiKeyStore(path).verify(key)
    assert (identity.who, identity.groups, identity.roles) == ("apikey:bot", ("eng",), {"writer"})
    path.write_text("keys:\n  - id: bot\n    sha256: nothex\n")
    with pytest.raises(ValueError, match="64 hex digits"):
        ApiKeyStore(path)


def test_credentials_are_checked_one_at_a_time(tmp_path: Path) -> None:
    auth = Authenticator(jwt_config(tmp_path))
    with pytest.raises(Unauthenticated, match="not several"):
        auth.identify([("authorization", "Bearer a"), ("authorization", "Bearer b")])
    with pytest.raises(Unauthenticated, match="malformed authorization"):
        auth.identify([("authorization", "Basic dXNlcg==")])
    with pytest.raises(Unauthenticated, match="API keys are not accepted"):
        auth.identify([("x-wikimem-api-key", mint())])
    with pytest.raises(Unauthenticated, match="not a JWT"):
        auth.identify([("authorization", "Bearer not-a-token")])
    idp = TestIdP(tmp_path / "other")
    unsigned = idp.token("x", alg="RS256").rsplit(".", 1)[0] + "."
    with pytest.raises(Unauthenticated):
        auth.identify([("authorization", f"Bearer {unsigned}")])
    off = Authenticator(AuthConfig())
    assert off.identify([("x-wikimem-groups", "hr, eng")]).groups == ("eng", "hr")


def test_warns_when_auth_is_off_on_a_public_address(caplog: pytest.LogCaptureFixture) -> None:
    config = OrchestratorConfig(embedder_addr="e", memory_addr="m", reranker_addr="r", reader_addr="d")
    with caplog.at_level(logging.WARNING, logger="wikimem.orchestrator"):
        make_authenticator(config, "127.0.0.1:50051")
        assert not caplog.records
        make_authenticator(config, "0.0.0.0:50051")
    assert "authentication is OFF" in caplog.records[0].getMessage()
    assert loopback("[::1]:1") and loopback("localhost:1") and not loopback("[::]:50051")


def test_jwks_from_a_url_is_cached_and_refetched_for_an_unknown_kid(tmp_path: Path) -> None:
    import http.server
    import threading

    from cryptography.hazmat.primitives.asymmetric import rsa

    idp = TestIdP(tmp_path)
    fetches: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            fetches.append(self.path)
            body = idp.jwks_file.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/realms/wikimem/protocol/openid-connect/certs"
        auth = Authenticator(AuthConfig(modes=("jwt",), jwks_url=url, jwt_issuer=ISSUER, jwt_audience=(AUDIENCE,),
                                        jwks_refresh_s=0))
        for _ in range(3):
            assert auth.identify([("authorization", f"Bearer {idp.token('ann', ['hr'], ['llm'])}")]).who == "jwt:ann"
        assert len(fetches) == 1  # cached
        rotated = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        idp.publish(rotated, "rotated", "RS256")
        identity = auth.identify([("authorization", f"Bearer {idp.token('ann', key=rotated, kid='rotated')}")])
        assert identity.subject == "ann" and len(fetches) == 2  # the unknown kid made it fetch again
    finally:
        server.shutdown()
        server.server_close()


def test_audit_lines_are_ascii_so_invisible_characters_show() -> None:
    from wikimem_orchestrator.audit import Entry

    entry = Entry(method="PutDocument", peer="ipv4:127.0.0.1:1", doc_id="hr/\u202efdp.md",
                  identity=Identity(kind=JWT, subject="mal\u200bory", groups=("hr",)))
    line = entry.line("INVALID_ARGUMENT", "doc_id contains U+202E")
    assert line.isascii() and "\\u202e" in line and "\n" not in line
    record = json.loads(line)
    assert (record["doc_id"], record["who"], record["outcome"]) == ("hr/\u202efdp.md", "jwt:mal\u200bory",
                                                                    "INVALID_ARGUMENT")


def test_warns_when_tokens_would_travel_in_plaintext(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    idp = TestIdP(tmp_path)
    auth = AuthConfig(modes=("jwt",), jwks_file=idp.jwks_file, jwt_issuer=ISSUER, jwt_audience=(AUDIENCE,))
    config = OrchestratorConfig(embedder_addr="e", memory_addr="m", reranker_addr="r", reader_addr="d", auth=auth)
    monkeypatch.delenv("WIKIMEM_TLS_CERT", raising=False)
    with caplog.at_level(logging.WARNING, logger="wikimem.orchestrator"):
        make_authenticator(config, "127.0.0.1:50051")
        assert not caplog.records
        make_authenticator(config, "0.0.0.0:50051")
        assert "travel in the clear" in caplog.records[0].getMessage()
        caplog.clear()
        monkeypatch.setenv("WIKIMEM_TLS_CERT", str(tmp_path / "public.pem"))
        make_authenticator(config, "0.0.0.0:50051")
        assert not caplog.records
