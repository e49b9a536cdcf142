//! Who may run what (SPEC §2 "DM permission"): checked before anything else
//! a command does.

use super::interaction::Interaction;
use crate::ids::DiscordId;

/// Who may use a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Only the Dungeon Master (holder of the DM role, when one is set).
    Dm,
    /// Every member.
    Anyone,
}

/// Checks the DM role of one tenant (or of the full-mode config).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PermissionChecker {
    dm_role: Option<DiscordId>,
}

impl PermissionChecker {
    /// A checker requiring `dm_role` for DM commands; `None` = everyone
    /// counts as DM.
    pub fn new(dm_role: Option<DiscordId>) -> Self {
        Self { dm_role }
    }

    /// The DM role, if one is set.
    pub fn dm_role(&self) -> Option<&DiscordId> {
        self.dm_role.as_ref()
    }

    /// `Ok` when the invoker may use a command of `access`; otherwise the
    /// refusal to show them (naming the role needed).
    pub fn check(&self, interaction: &Interaction, access: Access) -> Result<(), String> {
        let (Access::Dm, Some(role)) = (access, &self.dm_role) else {
            return Ok(());
        };
        if interaction.guild_id.is_none() {
            return Err("This command only works in a server, where your DM role can be checked.".into());
        }
        if interaction.invoker.roles.contains(role) {
            Ok(())
        } else {
            Err(format!(
                "Only the Dungeon Master can do that: you need the <@&{role}> role."
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::interaction::Invoker;

    fn member(roles: &[&str]) -> Interaction {
        Interaction::command(
            "session",
            Some("start"),
            Invoker {
                user_id: DiscordId::parse("7").unwrap(),
                name: "Ada".into(),
                roles: roles.iter().map(|r| DiscordId::parse(r).unwrap()).collect(),
            },
        )
        .in_guild(DiscordId::parse("1").unwrap(), DiscordId::parse("2").unwrap())
    }

    #[test]
    fn without_a_role_everyone_is_dm() {
        let checker = PermissionChecker::new(None);
        assert!(checker.check(&member(&[]), Access::Dm).is_ok());
        let mut outside = member(&[]);
        outside.guild_id = None;
        assert!(checker.check(&outside, Access::Dm).is_ok());
    }

    #[test]
    fn with_a_role_only_its_holders_and_the_refusal_names_it() {
        let checker = PermissionChecker::new(Some(DiscordId::parse("99").unwrap()));
        assert!(checker.check(&member(&["5", "99"]), Access::Dm).is_ok());
        let refusal = checker.check(&member(&["5"]), Access::Dm).unwrap_err();
        assert!(refusal.contains("<@&99>"), "{refusal}");
        assert!(checker.check(&member(&[]), Access::Anyone).is_ok());
        let mut outside = member(&["99"]);
        outside.guild_id = None;
        assert!(checker.check(&outside, Access::Dm).unwrap_err().contains("server"));
    }
}
