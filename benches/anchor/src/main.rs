//! A typical `lambda_http` cancel: what a user writes with the SDK's
//! defaults. The same AWS calls as the project's cancel of an
//! already-cancelled publish (the caller's user record, one conditional
//! `UpdateItem` that fails its condition), and nothing it does not need:
//! no password verification, no XML, no log or metric line. The benchmark's
//! reference for instructions per warm event, init and size.

use aws_sdk_dynamodb::types::AttributeValue;
use lambda_http::{run, service_fn, Body, Error, Request, RequestExt, Response};

struct Tables {
    dynamo: aws_sdk_dynamodb::Client,
    users: String,
    publishes: String,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let tables = Tables {
        dynamo: aws_sdk_dynamodb::Client::new(&config),
        users: std::env::var("USERS_TABLE")?,
        publishes: std::env::var("PUBLISHES_TABLE")?,
    };
    let tables = &tables;
    run(service_fn(move |request: Request| cancel(tables, request))).await
}

async fn cancel(tables: &Tables, request: Request) -> Result<Response<Body>, Error> {
    // users/{uid}/appliances/{aid}/images/{itid}/pimages/{pitid}/cancel
    let path = request.raw_http_path().to_owned();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let at = |name: &str| {
        parts
            .iter()
            .position(|p| *p == name)
            .and_then(|i| parts.get(i + 1))
            .map(|s| s.to_string())
            .unwrap_or_default()
    };
    let (uid, aid, itid, pitid) = (at("users"), at("appliances"), at("images"), at("pimages"));
    let user = tables
        .dynamo
        .get_item()
        .table_name(&tables.users)
        .key("login", AttributeValue::S(uid.clone()))
        .send()
        .await?;
    if user.item.is_none() {
        return Ok(Response::builder().status(401).body(Body::Empty)?);
    }
    let update = tables
        .dynamo
        .update_item()
        .table_name(&tables.publishes)
        .key("uid", AttributeValue::S(uid))
        .key("publishKey", AttributeValue::S(format!("{aid}/{itid}/{pitid}")))
        .update_expression("SET #s = :cancelled")
        .condition_expression("#s IN (:queued, :publishing)")
        .expression_attribute_names("#s", "state")
        .expression_attribute_values(":cancelled", AttributeValue::S("cancelled".into()))
        .expression_attribute_values(":queued", AttributeValue::S("queued".into()))
        .expression_attribute_values(":publishing", AttributeValue::S("publishing".into()))
        .send()
        .await;
    let cancelled = match update {
        Ok(_) => true,
        Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
            false
        }
        Err(e) => return Err(e.into()),
    };
    let body = serde_json::json!({"cancelled": true, "changed": cancelled}).to_string();
    Ok(Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Body::Text(body))?)
}
