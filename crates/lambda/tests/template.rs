//! The deployment template defines a route for every route the core has: a protocol action
//! without an API Gateway route would fall to `$default` in AWS and work only by accident.
//! (`scripts/test-aws-deploy` lints the template and checks the rest of it.)

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

use std::collections::BTreeSet;

use meshcall_core::Route;

fn template() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/aws/template.yaml"
    );
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The value of every `RouteKey:` line, unquoted.
fn route_keys(template: &str) -> BTreeSet<String> {
    template
        .lines()
        .filter_map(|l| l.trim().strip_prefix("RouteKey:"))
        .map(|v| v.trim().trim_matches(|c| c == '\'' || c == '"').to_owned())
        .collect()
}

#[test]
fn the_template_has_a_route_for_every_route_of_the_core_and_no_other() {
    let wanted: BTreeSet<String> = Route::ALL.iter().map(|r| r.as_str().to_owned()).collect();
    assert_eq!(route_keys(&template()), wanted);
}

#[test]
fn route_keys_are_read_from_quoted_and_plain_lines() {
    let yaml = "  R:\n    Properties:\n      RouteKey: '$connect'\n      RouteKey: ping\n";
    assert_eq!(
        route_keys(yaml),
        BTreeSet::from(["$connect".to_owned(), "ping".to_owned()])
    );
}

#[test]
fn the_route_selection_expression_is_the_action_field() {
    assert!(
        template().lines().any(
            |l| l.trim() == "RouteSelectionExpression: $request.body.action"
                || l.trim() == "RouteSelectionExpression: '$request.body.action'"
        ),
        "the protocol selects routes on the `action` field, as the tutorial does"
    );
}
