//! Roles and the run's conventions for reading cells (the phone region, the user's own role
//! synonyms).

use super::clean;

/// How this run reads cells beyond the fixed rules: the default region for national phone
/// numbers and the user's own role synonyms.
#[derive(Debug, Clone, Default)]
pub struct Conventions {
    /// ISO alpha-2 region for phone numbers written without a country code, when the row has
    /// no country (`--region`).
    pub region: Option<String>,
    /// Role synonyms (folded as [`role_key`]) → the role they stand for, checked before the
    /// built-in table (`--role-synonym "Team Lead=user"`, the config's `[role_synonyms]`).
    role_synonyms: Vec<(String, String)>,
}

impl Conventions {
    /// Adds a synonym; later ones win.
    pub fn add_role_synonym(&mut self, synonym: &str, role: &str) {
        self.role_synonyms
            .insert(0, (role_key(synonym), role.trim().to_string()));
    }

    /// The role a cell stands for under the user's synonyms, or the cell itself.
    pub fn role<'a>(&'a self, raw: &'a str) -> &'a str {
        if self.role_synonyms.is_empty() {
            return raw;
        }
        let key = role_key(raw);
        self.role_synonyms
            .iter()
            .find(|(synonym, _)| *synonym == key)
            .map_or(raw, |(_, role)| role.as_str())
    }
}

/// A role as compared with synonyms: case, spaces, `-` and `_` do not matter.
pub fn role_key(raw: &str) -> String {
    clean(raw)
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '_'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Maps a role (or one of its common synonyms) to the canonical `user` or `organization-admin`;
/// anything else is refused, never guessed.
pub fn role(raw: &str) -> Result<String, String> {
    // The cell most files hold is already canonical: answered without cleaning or folding
    // (three allocations a row otherwise).
    match raw.trim_ascii() {
        "user" => return Ok("user".to_string()),
        "organization-admin" => return Ok("organization-admin".to_string()),
        _ => {}
    }
    let value = clean(raw);
    let key = role_key(&value);
    match key.as_str() {
        "user" | "standarduser" | "member" | "enduser" => Ok("user".to_string()),
        "organizationadmin" | "organisationadmin" | "orgadmin" | "admin" | "tenantadmin" => {
            Ok("organization-admin".to_string())
        }
        _ => Err(format!(
            "`{value}` is not a known role (user, organization-admin)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_map_synonyms_and_refuse_others() {
        assert_eq!(role("Standard User").unwrap(), "user");
        assert_eq!(role("org_admin").unwrap(), "organization-admin");
        assert_eq!(role("Organisation-Admin").unwrap(), "organization-admin");
        assert!(role("superuser").is_err());
    }

    #[test]
    fn user_synonyms_come_before_the_built_in_table() {
        let mut conventions = Conventions::default();
        conventions.add_role_synonym("Team Lead", "organization-admin");
        conventions.add_role_synonym("admin", "user");
        assert_eq!(conventions.role(" team-lead "), "organization-admin");
        assert_eq!(role(conventions.role("ADMIN")).unwrap(), "user");
        assert_eq!(conventions.role("Member"), "Member");
    }
}
