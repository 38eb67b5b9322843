//! The verifier's rules, one by one, with real keys and real signatures ([`super::testkit`]).

use std::time::{Duration, SystemTime};

use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::testkit::*;
use super::*;

#[test]
fn accepts_rs256_ps256_and_es256_tokens_from_published_keys() {
    let v = verifier();
    for alg in ["RS256", "PS256", "ES256"] {
        let id = verify(&v, &token(alg, &claims())).unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(id.username, "alice@example.com", "{alg}");
    }
}

#[test]
fn rejects_alg_none() {
    let v = verifier();
    for alg in ["none", "None", "NONE"] {
        let t = sign_with(&json!({"alg": alg, "kid": "rsa-1"}), &claims(), Signer::None);
        assert_eq!(verify(&v, &t), Err(Rejected::Algorithm), "{alg}");
    }
}

#[test]
fn rejects_hs256_signed_with_the_rsa_public_key() {
    let v = verifier();
    let public = keys().rsa.public_key();
    // The classic confusion: the public key (in every encoding a verifier might use) as an
    // HMAC secret.
    let jwk = rsa_jwk(&keys().rsa, "rsa-1").to_string();
    for secret in [public.as_ref(), jwk.as_bytes()] {
        let t = sign_with(&json!({"alg": "HS256", "kid": "rsa-1"}), &claims(), Signer::Hmac(secret));
        assert_eq!(verify(&v, &t), Err(Rejected::Algorithm));
    }
}

#[test]
fn rejects_an_allowed_algorithm_the_key_cannot_have_signed() {
    let v = verifier();
    // RS256 claimed for the EC key, and an EC signature presented under the RSA kid.
    let rs_on_ec =
        sign_with(&json!({"alg": "RS256", "kid": "ec-1"}), &claims(), Signer::Rsa(&keys().rsa, &RSA_PKCS1_SHA256));
    assert_eq!(verify(&v, &rs_on_ec), Err(Rejected::KeyMismatch));
    let es_on_rsa = sign_with(&json!({"alg": "ES256", "kid": "rsa-1"}), &claims(), Signer::Ec(&keys().ec));
    assert_eq!(verify(&v, &es_on_rsa), Err(Rejected::KeyMismatch));
}

#[test]
fn rejects_an_algorithm_outside_the_allow_list() {
    let v = verifier();
    assert_eq!(verify(&v, &token("RS384", &claims())), Err(Rejected::Algorithm));
    let mut config = config();
    config.algorithms = vec![Algorithm::ES256];
    let only_es = verifier_with(config, &jwks());
    assert_eq!(verify(&only_es, &token("RS256", &claims())), Err(Rejected::Algorithm));
    assert!(verify(&only_es, &token("ES256", &claims())).is_ok());
}

#[test]
fn a_jwk_alg_pins_its_key_to_that_algorithm() {
    let mut jwk = rsa_jwk(&keys().rsa, "rsa-1");
    jwk["alg"] = "RS256".into();
    let v = verifier_with(config(), &json!({"keys": [jwk]}));
    assert!(verify(&v, &token("RS256", &claims())).is_ok());
    assert_eq!(verify(&v, &token("PS256", &claims())), Err(Rejected::KeyMismatch));
}

#[test]
fn rejects_an_unknown_kid_and_asks_for_a_refresh_without_waiting() {
    let v = verifier();
    let t = sign_with(
        &json!({"alg": "RS256", "kid": "rotated-2"}),
        &claims(),
        Signer::Rsa(&keys().stranger, &RSA_PKCS1_SHA256),
    );
    let before = v.keys().refresh_requests();
    assert_eq!(verify(&v, &t), Err(Rejected::UnknownKey));
    assert_eq!(v.keys().refresh_requests(), before + 1);
}

#[test]
fn a_kid_is_required_only_when_several_keys_are_published() {
    let several = verifier();
    let no_kid = sign_with(&json!({"alg": "RS256"}), &claims(), Signer::Rsa(&keys().rsa, &RSA_PKCS1_SHA256));
    assert_eq!(verify(&several, &no_kid), Err(Rejected::MissingKid));
    let single = verifier_with(config(), &json!({"keys": [rsa_jwk(&keys().rsa, "rsa-1")]}));
    assert!(verify(&single, &no_kid).is_ok());
}

#[test]
fn rejects_a_token_signed_by_a_key_that_is_not_published_under_its_kid() {
    let v = verifier();
    let t = sign_with(
        &json!({"alg": "RS256", "kid": "rsa-1"}),
        &claims(),
        Signer::Rsa(&keys().stranger, &RSA_PKCS1_SHA256),
    );
    assert_eq!(verify(&v, &t), Err(Rejected::Signature));
}

#[test]
fn rejects_a_tampered_payload() {
    let v = verifier();
    let t = token("RS256", &claims());
    let mut parts: Vec<&str> = t.split('.').collect();
    let forged = b64(&with(claims(), "email", json!("mallory@example.com")));
    parts[1] = &forged;
    assert_eq!(verify(&v, &parts.join(".")), Err(Rejected::Signature));
    // A flipped signature bit, too.
    let mut sig = URL_SAFE_NO_PAD.decode(t.rsplit('.').next().expect("sig")).expect("b64");
    sig[10] ^= 1;
    let flipped = format!("{}.{}", t.rsplit_once('.').expect("dot").0, URL_SAFE_NO_PAD.encode(sig));
    assert_eq!(verify(&v, &flipped), Err(Rejected::Signature));
}

#[test]
fn issuer_must_match_byte_for_byte() {
    let v = verifier();
    for iss in [json!("https://idp.example.com/"), json!("https://evil.example.com"), json!([ISSUER]), json!(null)] {
        let t = token("RS256", &with(claims(), "iss", iss.clone()));
        assert!(matches!(verify(&v, &t), Err(Rejected::Issuer | Rejected::Claims)), "{iss}");
    }
    assert_eq!(verify(&v, &token("RS256", &without(claims(), "iss"))), Err(Rejected::Issuer));
}

#[test]
fn audience_must_name_an_accepted_audience() {
    let v = verifier();
    for aud in [json!("https://other.example.com/mcp"), json!([]), json!(["x", "y"]), json!(42)] {
        let t = token("RS256", &with(claims(), "aud", aud.clone()));
        assert!(matches!(verify(&v, &t), Err(Rejected::Audience | Rejected::Claims)), "{aud}");
    }
    assert_eq!(verify(&v, &token("RS256", &without(claims(), "aud"))), Err(Rejected::Audience));
    let t = token("RS256", &with(claims(), "aud", json!(["x", "second-audience"])));
    assert!(verify(&v, &t).is_ok(), "an array naming one accepted audience is accepted");
}

#[test]
fn a_client_id_claim_is_accepted_instead_of_an_audience_when_configured() {
    // A Cognito access token: `client_id`, no `aud`.
    let cognito = with(without(claims(), "aud"), "client_id", json!("app-client-1"));
    assert_eq!(verify(&verifier(), &token("RS256", &cognito)), Err(Rejected::Audience), "not configured");
    let mut config = JwtConfig { client_ids: vec!["app-client-1".into()], ..config() };
    let v = verifier_with(config.clone(), &jwks());
    assert!(verify(&v, &token("RS256", &cognito)).is_ok());
    for other in [json!("app-client-2"), json!(["app-client-1"]), json!(1)] {
        let t = token("RS256", &with(cognito.clone(), "client_id", other.clone()));
        assert_eq!(verify(&v, &t), Err(Rejected::Audience), "{other}");
    }
    // Either check suffices: an accepted `aud` with another client passes, as before.
    assert!(verify(&v, &token("RS256", &with(claims(), "client_id", json!("x")))).is_ok());
    // With no accepted audience at all, only the client id lets a token in.
    config.audiences.clear();
    let v = verifier_with(config, &jwks());
    assert_eq!(verify(&v, &token("RS256", &claims())), Err(Rejected::Audience));
    assert!(verify(&v, &token("RS256", &cognito)).is_ok());
}

#[test]
fn time_claims_are_checked_with_the_clock_skew() {
    let v = verifier(); // skew 30s, max lifetime 1h
    let now = now();
    let cases: &[(&str, Value, Result<(), Rejected>)] = &[
        ("expired", json!({"iat": now - 600, "nbf": now - 600, "exp": now - 60}), Err(Rejected::Expired)),
        ("expired within skew", json!({"iat": now - 600, "nbf": now - 600, "exp": now - 10}), Ok(())),
        ("not yet valid", json!({"nbf": now + 600, "exp": now + 900}), Err(Rejected::NotYetValid)),
        ("nbf within skew", json!({"nbf": now + 10, "exp": now + 300}), Ok(())),
        ("issued in the future", json!({"iat": now + 600, "exp": now + 900}), Err(Rejected::IssuedInFuture)),
        ("too long", json!({"iat": now, "exp": now + 7200}), Err(Rejected::Lifetime)),
        ("too long without iat", json!({"iat": null, "nbf": null, "exp": now + 7200}), Err(Rejected::Claims)),
        ("string exp", json!({"exp": "later"}), Err(Rejected::Claims)),
    ];
    for (name, patch, want) in cases {
        let mut c = claims();
        for (k, val) in patch.as_object().expect("object") {
            c[k] = val.clone();
        }
        let got = verify(&v, &token("RS256", &c)).map(|_| ());
        assert_eq!(&got, want, "{name}");
    }
    let no_times = without(without(without(claims(), "iat"), "nbf"), "exp");
    assert_eq!(verify(&v, &token("RS256", &no_times)), Err(Rejected::Claims), "exp is required");
    let bare = without(without(claims(), "iat"), "nbf");
    assert!(verify(&v, &token("RS256", &bare)).is_ok(), "iat and nbf are optional");
    let far = with(without(without(claims(), "iat"), "nbf"), "exp", json!(now + 7200));
    assert_eq!(verify(&v, &token("RS256", &far)), Err(Rejected::Lifetime), "bounded without iat too");
}

#[test]
fn a_repeated_token_is_trusted_again_only_while_valid_and_under_the_same_keys() {
    let v = verifier(); // skew 30s
    let t = token("RS256", &claims()); // exp now + 300
    let now = SystemTime::now();
    assert!(v.verify(&t, now).is_ok());
    assert_eq!(v.verify(&t, now).map(|i| i.username), Ok("alice@example.com".into()), "from the memo");
    let later = now + Duration::from_secs(400);
    assert_eq!(v.verify(&t, later), Err(Rejected::Expired), "the memo re-checks the time claims");
    // The same keys installed again: a new generation, so the token is verified afresh.
    let (same, _) = keyset::KeySet::parse(jwks().to_string().as_bytes(), DEFAULT_ALGORITHMS).expect("jwks");
    v.keys().replace(same);
    assert!(v.verify(&t, now).is_ok());
    // The signing key withdrawn: the memo never outlives the key set that vouched for it.
    let ec_only = json!({"keys": [ec_jwk(&keys().ec, "ec-1")]});
    let (withdrawn, _) = keyset::KeySet::parse(ec_only.to_string().as_bytes(), DEFAULT_ALGORITHMS).expect("jwks");
    v.keys().replace(withdrawn);
    assert_eq!(v.verify(&t, now), Err(Rejected::UnknownKey));
}

#[test]
fn a_critical_header_is_refused() {
    let v = verifier();
    let t = sign_with(
        &json!({"alg": "RS256", "kid": "rsa-1", "crit": ["exp"], "exp": 1}),
        &claims(),
        Signer::Rsa(&keys().rsa, &RSA_PKCS1_SHA256),
    );
    assert_eq!(verify(&v, &t), Err(Rejected::Critical));
}

#[test]
fn malformed_and_oversized_tokens_are_refused_before_any_key_is_used() {
    let v = verifier();
    let huge = format!("eyJ{}.eyJ.sig", "A".repeat(MAX_TOKEN_BYTES));
    for t in ["", "abc", "a.b", "a.b.c.d", "eyJhbGciOiJSUzI1NiJ9..sig", "eyJ!.eyJ.x", "bm90IGpzb24.eyJ.x", &huge] {
        assert_eq!(verify(&v, t), Err(Rejected::Malformed), "{t:.40}");
    }
}

/// The good claims as JSON text with `extra` spliced in before the closing brace.
fn claims_text_with(extra: &str) -> String {
    let text = claims().to_string();
    format!("{},{extra}}}", text.strip_suffix('}').expect("object"))
}

#[test]
fn a_key_named_twice_anywhere_in_the_claims_is_malformed_though_signed() {
    // Issue 26.3: a reader keeping the first value and one keeping the last would see
    // different users. Signed by the published key: the refusal is not a signature one.
    let v = verifier();
    let rsa = || Signer::Rsa(&keys().rsa, &RSA_PKCS1_SHA256);
    let header = r#"{"alg":"RS256","typ":"at+jwt","kid":"rsa-1"}"#;
    for extra in [
        r#""email":"admin@example.com""#,
        r#""groups":["readers"],"groups":["admins"]"#,
        r#""email":"admin@example.com""#,
        r#""profile":{"tid":"a","tid":"b"}"#,
        r#""nested":[{"x":{"k":1,"k":2}}]"#,
    ] {
        let t = sign_text(header, &claims_text_with(extra), rsa());
        assert_eq!(verify(&v, &t), Err(Rejected::Malformed), "{extra}");
    }
    let fine = sign_text(header, &claims_text_with(r#""profile":{"email":"x","k":{"email":"y"}}"#), rsa());
    assert_eq!(verify(&v, &fine).map(|i| i.username), Ok("alice@example.com".into()), "equal keys apart");
}

#[test]
fn a_key_named_twice_in_the_header_is_malformed() {
    let v = verifier();
    let rsa = || Signer::Rsa(&keys().rsa, &RSA_PKCS1_SHA256);
    let claims = claims().to_string();
    for header in [
        r#"{"alg":"RS256","typ":"at+jwt","typ":"JWT","kid":"rsa-1"}"#,
        r#"{"alg":"RS256","kid":"rsa-1","x":{"a":1,"a":1}}"#,
        r#"{"alg":"RS256","kid":"rsa-1","kid":"rsa-1"}"#,
    ] {
        assert_eq!(verify(&v, &sign_text(header, &claims, rsa())), Err(Rejected::Malformed), "{header}");
    }
}

#[test]
fn bearer_values_shaped_like_a_jws_go_to_the_jwt_method() {
    let t = token("RS256", &claims());
    assert!(looks_like_jwt(&t));
    assert!(looks_like_jwt("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0."), "alg none still goes to the JWT method");
    for key in ["mcpw_abcDEF123-_", "e2e-alice-key", "eyJ.abc", "eyJ..x", "a.b.c", "eyJ.a.b.c", "eyJ a.b.c"] {
        assert!(!looks_like_jwt(key), "{key}");
    }
}

#[test]
fn resource_metadata_url_inserts_the_well_known_path_before_the_request_path() {
    let v = verifier(); // mcp-warden issuer https://warden.example.com
    assert_eq!(v.resource_metadata_url(), "https://warden.example.com/.well-known/oauth-protected-resource");
    assert_eq!(v.resource_origin(), "https://warden.example.com");
    let cases = [
        ("/mcp", "https://warden.example.com/.well-known/oauth-protected-resource/mcp"),
        ("/other/mcp?x=1", "https://warden.example.com/.well-known/oauth-protected-resource/other/mcp"),
        ("/", "https://warden.example.com/.well-known/oauth-protected-resource"),
        ("", "https://warden.example.com/.well-known/oauth-protected-resource"),
        ("/a\"b\\c", "https://warden.example.com/.well-known/oauth-protected-resource/a%22b%5Cc"),
    ];
    for (path, want) in cases {
        assert_eq!(v.resource_metadata_for(path), want, "{path}");
    }
    let mut config = config();
    config.resource_metadata_url = Some("https://mcp.example.com/.well-known/oauth-protected-resource".into());
    let v = verifier_with(config, &jwks());
    assert_eq!(v.resource_origin(), "https://mcp.example.com");
}
