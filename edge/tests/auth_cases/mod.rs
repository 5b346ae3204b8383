//! Tokens the Worker issues (AdminService.IssueToken) against moq-relay-ietf's
//! own verifier (`CatAuthHook`), built from the policy the WorkerCoordinator
//! hands the relay (`get_scope_config`): what the relay admits and refuses.

use base64::Engine;
use moq_worker_edge::moq_relay_ietf::{
    AuthHook, AuthRequest, AuthToken, AuthzOperation, CatAuthHook, Principal, SessionContext,
};
use moq_worker_edge::moq_transport::coding::TrackName;

use super::*;

fn grant_ns(env: &Env, path: &str) -> proto::Namespace {
    proto::Namespace {
        fields: env
            .ns(path)
            .fields
            .iter()
            .map(|f| f.value.clone())
            .collect(),
    }
}

async fn issue(
    env: &Env,
    scope: &str,
    grant: proto::TokenGrant,
    prefix: &str,
    track: Option<&str>,
    ttl: u32,
) -> anyhow::Result<Vec<u8>> {
    let issued: proto::IssueTokenResponse = env
        .admin
        .call(
            "IssueToken",
            &proto::IssueTokenRequest {
                scope: scope.to_string(),
                grants: vec![grant as i32],
                namespace_prefix: Some(grant_ns(env, prefix)),
                track: track.map(str::to_string),
                ttl_seconds: Some(ttl),
                ..Default::default()
            },
        )
        .await?;
    let b64 = issued
        .token
        .strip_prefix("1:")
        .context("an issued token starts with its type, 1:")?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(b64)?)
}

/// The relay's verifier for `scope`, from the policy the coordinator answers.
async fn verifier(relay: &Relay, scope: &str) -> anyhow::Result<CatAuthHook> {
    let config = relay.coord.get_scope_config(Some(scope)).await?;
    let auth = config.auth.context("the scope has a token policy")?;
    Ok(CatAuthHook::new(&auth, Some(scope))?)
}

/// The principal a session opened with `token` gets, or None if refused.
async fn admit(hook: &CatAuthHook, scope: &str, token: &[u8]) -> anyhow::Result<Option<Principal>> {
    let session = SessionContext::public(Some(scope.to_string()));
    let decision = hook
        .on_setup(&session, &[AuthToken::new(1, token.to_vec())])
        .await?;
    Ok(decision.principal().cloned())
}

/// Checks the relay's verdict on each operation for `principal`: allowed or not, as expected.
async fn verdicts(
    hook: &CatAuthHook,
    scope: &str,
    principal: &Principal,
    expected: Vec<(AuthzOperation<'_>, bool, &str)>,
) -> anyhow::Result<()> {
    let session = SessionContext::public(Some(scope.to_string()));
    for (operation, allowed, what) in expected {
        let request = AuthRequest {
            session: &session,
            principal,
            operation,
            request_id: None,
        };
        let verdict = hook.on_request(&request).await?.is_allowed();
        ensure!(
            verdict == allowed,
            "{what}: allowed {verdict}, expected {allowed}"
        );
    }
    Ok(())
}

/// A new Worker key for `scope` (the first turns its policy on); its kid.
async fn rotate(env: &Env, scope: &str) -> anyhow::Result<String> {
    let r: proto::RotateScopeKeyResponse = env
        .admin
        .call(
            "RotateScopeKey",
            &proto::RotateScopeKeyRequest {
                scope: scope.to_string(),
            },
        )
        .await?;
    Ok(r.key.context("a key")?.kid)
}

pub(crate) async fn issued_tokens_pass_the_relays_verifier(env: &Env) -> anyhow::Result<()> {
    let a = env.relay("a").await?;
    let scope = env.scope("cat");
    rotate(env, &scope).await?;
    let hook = verifier(&a, &scope).await?;
    let live = env.ns("live/cam");
    let other = env.ns("other/cam");
    let video = TrackName::from("video");
    let audio = TrackName::from("audio");
    use AuthzOperation::{Fetch, Publish, PublishNamespace, Subscribe};

    // A publisher's token for <run>/live: it may announce and publish there only.
    let publish = issue(env, &scope, proto::TokenGrant::Publish, "live", None, 60).await?;
    let p = admit(&hook, &scope, &publish)
        .await?
        .context("the relay admits the publish token")?;
    let on = |namespace| PublishNamespace { namespace };
    verdicts(
        &hook,
        &scope,
        &p,
        vec![
            (on(&live), true, "announcing its namespace"),
            (
                Publish {
                    namespace: &live,
                    track: &video,
                },
                true,
                "publishing there",
            ),
            (on(&other), false, "announcing another namespace"),
            (
                Subscribe {
                    namespace: &live,
                    track: &video,
                },
                false,
                "a publish token subscribing",
            ),
        ],
    )
    .await?;

    // A viewer's token for one track.
    let watch = issue(
        env,
        &scope,
        proto::TokenGrant::Subscribe,
        "live",
        Some("video"),
        60,
    )
    .await?;
    let v = admit(&hook, &scope, &watch)
        .await?
        .context("the relay admits the subscribe token")?;
    verdicts(
        &hook,
        &scope,
        &v,
        vec![
            (
                Subscribe {
                    namespace: &live,
                    track: &video,
                },
                true,
                "subscribing to its track",
            ),
            (
                Fetch {
                    namespace: &live,
                    track: &video,
                },
                true,
                "fetching its track",
            ),
            (
                Subscribe {
                    namespace: &live,
                    track: &audio,
                },
                false,
                "another track",
            ),
            (on(&live), false, "a subscribe token publishing"),
        ],
    )
    .await?;

    // No token, or garbage: refused at setup.
    let session = SessionContext::public(Some(scope.clone()));
    ensure!(!hook.on_setup(&session, &[]).await?.is_allowed());
    let mut forged = watch.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    ensure!(
        admit(&hook, &scope, &forged).await?.is_none(),
        "a forged signature is refused"
    );
    Ok(())
}

pub(crate) async fn removed_keys_and_expired_tokens_are_refused(env: &Env) -> anyhow::Result<()> {
    let a = env.relay("a").await?;
    // A key removed from the policy: its tokens are refused once the removal
    // reaches the relay's policy (by push).
    let scope = env.scope("cat-removed");
    let old_kid = rotate(env, &scope).await?;
    let old = issue(env, &scope, proto::TokenGrant::Subscribe, "live", None, 60).await?;
    ensure!(admit(&verifier(&a, &scope).await?, &scope, &old)
        .await?
        .is_some());
    rotate(env, &scope).await?;
    let _: proto::RemoveScopeKeyResponse = env
        .admin
        .call(
            "RemoveScopeKey",
            &proto::RemoveScopeKeyRequest {
                scope: scope.clone(),
                kid: old_kid,
            },
        )
        .await?;
    within(
        Duration::from_secs(5),
        "the removed key's token refused",
        || async {
            ensure!(admit(&verifier(&a, &scope).await?, &scope, &old)
                .await?
                .is_none());
            Ok(())
        },
    )
    .await?;

    // An expired token, with no clock skew (the relay's smallest tolerance is 1 s).
    let scope = env.scope("cat-expired");
    rotate(env, &scope).await?;
    env.admin
        .put_scope_config(
            &scope,
            proto::ScopeConfig {
                auth: Some(proto::ScopeAuth {
                    clock_skew_seconds: Some(0),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await?;
    let short = issue(env, &scope, proto::TokenGrant::Subscribe, "live", None, 1).await?;
    ensure!(admit(&verifier(&a, &scope).await?, &scope, &short)
        .await?
        .is_some());
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    ensure!(
        admit(&verifier(&a, &scope).await?, &scope, &short)
            .await?
            .is_none(),
        "an expired token is refused"
    );
    Ok(())
}
