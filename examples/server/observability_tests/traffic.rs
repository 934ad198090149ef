//! The mix of good and bad requests, over HTTP, against a fresh server.

use super::*;

/// Runs the mix against a fresh server, checks its metrics page, and
/// returns every secret that went over the wire.
pub(super) async fn traffic(_capture: Capture) -> Vec<String> {
    // The CI platform's JWKS, served over HTTP on loopback.
    let ci_key = SigningKey::generate(Algorithm::ES256).unwrap();
    let jwks = json!({ "keys": [ci_key.public_jwk().unwrap()] });
    let jwks_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_address = jwks_listener.local_addr().unwrap();
    let jwks_app = Router::new().route("/jwks", get(move || async move { axum::Json(jwks) }));
    tokio::task::spawn_local(async move { axum::serve(jwks_listener, jwks_app).await });
    let ci_issuer = format!("http://{jwks_address}");

    let port = free_port();
    let metrics_port = free_port();
    let dead_port = free_port();
    let dir = std::env::temp_dir().join(format!("obs-test-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = format!(
        r#"
issuer = "http://127.0.0.1:{port}"
listen = "127.0.0.1:{port}"
[store]
memory = true
[attempt_limits]
per_client_id = 3
[metrics]
listen = "127.0.0.1:{metrics_port}"
[[applications]]
client_id = "static-client"
slug = "static"
scopes = ["read"]
[[applications]]
client_id = "ci-client"
slug = "ci"
scopes = ["deploy"]
allow_any_account = true
assertion_audiences = ["obs-audience"]
[[applications.trusted_issuers]]
issuer = "{ci_issuer}"
jwks_url = "{ci_issuer}/jwks"
[[applications.trusted_issuers]]
issuer = "http://127.0.0.1:{dead_port}"
jwks_url = "http://127.0.0.1:{dead_port}/jwks"
[[service_accounts]]
username = "svc"
tokens = [{{ token = "{APP_PASSWORD}" }}]
bindings = [{{ client_id = "static-client", scopes = ["read"] }}]
"#
    );
    let path = dir.join("obs.toml");
    std::fs::write(&path, config).unwrap();
    tokio::task::spawn_local(async move {
        if let Err(error) = run(Some(path), ServeArgs { listen: None }).await {
            panic!("server failed: {error}");
        }
    });
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    for _ in 0..200 {
        // Ready once it publishes its keys (not counted below).
        let jwks = client.get(format!("{base}/application/o/static/jwks/"));
        if jwks.send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let mut secrets = vec![APP_PASSWORD.to_owned(), WRONG_PASSWORD.to_owned()];

    let token_request = |form: Vec<(&'static str, String)>| {
        let request = client
            .post(format!("{base}{TOKEN_PATH}"))
            .header("content-type", FORM)
            .body(serde_urlencoded::to_string(&form).unwrap());
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let static_form = |password: &str| {
        vec![
            ("grant_type", "client_credentials".to_owned()),
            ("client_id", "static-client".to_owned()),
            ("username", "svc".to_owned()),
            ("password", password.to_owned()),
            ("scope", "read".to_owned()),
        ]
    };
    // Static authentication: two good, one wrong password, one unknown client.
    let (status, good) = token_request(static_form(APP_PASSWORD)).await;
    assert_eq!(status, 200, "{good}");
    let access_token = good["access_token"].as_str().unwrap().to_owned();
    let id_token = good["id_token"].as_str().unwrap().to_owned();
    let (status, again) = token_request(static_form(APP_PASSWORD)).await;
    assert_eq!(status, 200);
    secrets.extend([access_token.clone(), id_token.clone()]);
    secrets.push(again["access_token"].as_str().unwrap().to_owned());
    assert_eq!(token_request(static_form(WRONG_PASSWORD)).await.0, 400);
    let mut unknown = static_form(APP_PASSWORD);
    unknown[1].1 = "nobody".into();
    assert_eq!(token_request(unknown).await.0, 400);

    // JWT authentication: one good, then bad ones until the client is locked out.
    let jwt_form = |jwt: &str| {
        vec![
            ("grant_type", "client_credentials".to_owned()),
            ("client_id", "ci-client".to_owned()),
            ("client_assertion_type", JWT_BEARER.to_owned()),
            ("client_assertion", jwt.to_owned()),
            ("scope", "deploy".to_owned()),
        ]
    };
    let good_jwt = assertion(&ci_key, &ci_issuer);
    let (status, jwt_token) = token_request(jwt_form(&good_jwt)).await;
    assert_eq!(status, 200, "{jwt_token}");
    secrets.push(good_jwt);
    secrets.push(jwt_token["access_token"].as_str().unwrap().to_owned());
    let impostor = SigningKey::generate(Algorithm::ES256).unwrap();
    for _ in 0..3 {
        let bad_jwt = assertion(&impostor, &ci_issuer);
        assert_eq!(token_request(jwt_form(&bad_jwt)).await.0, 400);
        secrets.push(bad_jwt);
    }
    let bad_jwt = assertion(&impostor, &ci_issuer);
    assert_eq!(token_request(jwt_form(&bad_jwt)).await.0, 429);
    secrets.push(bad_jwt);

    // Introspection: one good caller, one with a wrong password.
    let introspect = |password: &str| {
        let mut form = static_form(password);
        form.retain(|(key, _)| *key != "grant_type" && *key != "scope");
        form.push(("token", access_token.clone()));
        client
            .post(format!("{base}{INTROSPECT_PATH}"))
            .header("content-type", FORM)
            .body(serde_urlencoded::to_string(&form).unwrap())
            .send()
    };
    let response = introspect(APP_PASSWORD).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["active"], true);
    assert_eq!(introspect(WRONG_PASSWORD).await.unwrap().status(), 400);

    // The sample API: a miss then a hit of the verified-token cache, a
    // malformed token, no token, an ID token.
    let hello = |token: Option<&str>| {
        let request = client.get(format!("{base}/api/hello"));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
        .send()
    };
    assert_eq!(hello(Some(&access_token)).await.unwrap().status(), 200);
    assert_eq!(hello(Some(&access_token)).await.unwrap().status(), 200);
    assert_eq!(hello(Some("garbage")).await.unwrap().status(), 401);
    assert_eq!(hello(None).await.unwrap().status(), 401);
    assert_eq!(hello(Some(&id_token)).await.unwrap().status(), 401);

    check_metrics(&client, metrics_port).await;
    std::fs::remove_dir_all(&dir).ok();
    secrets
}
