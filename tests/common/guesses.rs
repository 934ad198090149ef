//! Many wrong guesses sent at once, to show that an attempt limiter decides
//! on counts that no concurrent request can slip past.

use std::sync::Arc;

use tokio::sync::Barrier;

/// How a burst of wrong guesses was answered.
#[derive(Debug, Default)]
pub struct Answers {
    /// 200: requests that got their token.
    pub ok: usize,
    /// 400 `invalid_grant`: guesses that reached the verifier.
    pub invalid_grant: usize,
    /// 429 `temporarily_unavailable` with a `Retry-After` of at least 1 s.
    pub too_many: usize,
    /// Anything else, as (status, body).
    pub other: Vec<(u16, String)>,
}

impl Answers {
    /// Asserts that of `sent` guesses at most `limit` reached the verifier
    /// and every other one was refused with 429.
    pub fn assert_capped(&self, sent: usize, limit: usize) {
        assert!(self.other.is_empty() && self.ok == 0, "{self:?}");
        assert!(self.invalid_grant <= limit, "{self:?}");
        assert_eq!(self.invalid_grant + self.too_many, sent, "{self:?}");
    }
}

/// Sends `count` copies of the form `body` at once, taking turns among
/// `token_urls`: each from its own task and connection, released together
/// by a barrier.
pub async fn send_at_once(token_urls: &[String], body: &str, count: usize) -> Answers {
    let barrier = Arc::new(Barrier::new(count));
    let tasks: Vec<_> = (0..count)
        .map(|i| {
            let barrier = barrier.clone();
            let url = token_urls[i % token_urls.len()].clone();
            let body = body.to_owned();
            tokio::spawn(async move {
                // One client per task: no connection is shared or reused.
                let client = super::http();
                barrier.wait().await;
                client
                    .post(url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
                    .send()
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut answers = Answers::default();
    for task in tasks {
        let response = task.await.unwrap();
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let text = response.text().await.unwrap();
        let error = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|json| json["error"].as_str().map(str::to_owned));
        match (status, error.as_deref(), retry_after) {
            (200, None, None) => answers.ok += 1,
            (400, Some("invalid_grant"), None) => answers.invalid_grant += 1,
            (429, Some("temporarily_unavailable"), Some(1..)) => answers.too_many += 1,
            _ => answers.other.push((status, text)),
        }
    }
    answers
}
