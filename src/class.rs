//! The three priority classes of the seed and their lanes.
//!
//! Lower [`Class::lane`] numbers are sent first: emergency before bad news
//! before routine news, whatever arrived earlier.

use std::fmt;
use std::str::FromStr;

use crate::proto::Priority;

/// A priority class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// 重大紧急事件: reported within the first moment.
    Emergency,
    /// 报忧信息: edited and sent at once.
    BadNews,
    /// 动态信息: today's situation reported today.
    Routine,
}

/// A class name that is not one of ours.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown class {0:?}: use emergency, bad_news or routine")]
pub struct UnknownClass(pub String);

impl Class {
    /// Every class, most urgent first.
    pub const ALL: [Self; 3] = [Self::Emergency, Self::BadNews, Self::Routine];

    /// Whether the class goes ahead of routine work (emergency, bad news).
    pub fn is_urgent(self) -> bool {
        self != Self::Routine
    }

    /// The lane number in the store: 0 is sent first.
    pub fn lane(self) -> u8 {
        match self {
            Self::Emergency => 0,
            Self::BadNews => 1,
            Self::Routine => 2,
        }
    }

    /// The class of a lane number.
    pub fn from_lane(lane: u8) -> Option<Self> {
        Self::ALL.get(usize::from(lane)).copied()
    }

    /// The configuration and command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Emergency => "emergency",
            Self::BadNews => "bad_news",
            Self::Routine => "routine",
        }
    }

    /// The class as the seed names it: 重大紧急, 报忧, 动态.
    pub fn name_zh(self) -> &'static str {
        match self {
            Self::Emergency => "重大紧急",
            Self::BadNews => "报忧",
            Self::Routine => "动态",
        }
    }

    /// The protobuf enum value.
    pub fn to_proto(self) -> Priority {
        match self {
            Self::Emergency => Priority::Emergency,
            Self::BadNews => Priority::BadNews,
            Self::Routine => Priority::Routine,
        }
    }

    /// The class of a wire value; `None` for unspecified or unknown values.
    pub fn from_proto(value: i32) -> Option<Self> {
        match Priority::try_from(value).ok()? {
            Priority::Emergency => Some(Self::Emergency),
            Priority::BadNews => Some(Self::BadNews),
            Priority::Routine => Some(Self::Routine),
            Priority::Unspecified => None,
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Class {
    type Err = UnknownClass;
    fn from_str(s: &str) -> Result<Self, UnknownClass> {
        match s {
            "emergency" | "紧急" | "重大紧急" => Ok(Self::Emergency),
            "bad_news" | "bad-news" | "报忧" => Ok(Self::BadNews),
            "routine" | "动态" => Ok(Self::Routine),
            _ => Err(UnknownClass(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_order_by_urgency_and_round_trip() {
        for c in Class::ALL {
            assert_eq!(Class::from_lane(c.lane()), Some(c));
            assert_eq!(Class::from_proto(c.to_proto() as i32), Some(c));
            assert_eq!(c.name().parse::<Class>().unwrap(), c);
        }
        assert!(Class::Emergency.lane() < Class::BadNews.lane());
        assert!(Class::BadNews.lane() < Class::Routine.lane());
        assert!(Class::from_proto(0).is_none());
        assert!(Class::from_proto(99).is_none());
        assert!("urgent".parse::<Class>().is_err());
    }
}
