//! Which of the caller's grants open a service.

use airlock_common::dbus::GrantInfo;

/// The services a `services:a,b` scope names; none for a command scope.
pub fn services_of(scope: &str) -> Vec<&str> {
    scope
        .strip_prefix("services:")
        .map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// The first live grant (the gateway lists only live ones) covering `service`.
pub fn covering<'a>(grants: &'a [GrantInfo], service: &str) -> Option<&'a GrantInfo> {
    grants
        .iter()
        .find(|g| services_of(&g.scope).contains(&service))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_lists_services() {
        assert_eq!(services_of("services:gmail, github"), ["gmail", "github"]);
        assert!(services_of("command:git push").is_empty());
        assert!(services_of("services:").is_empty());
    }
}
