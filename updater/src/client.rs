//! The terminal's conversations with the directory: publish its addresses (one signed
//! UPDATE replacing both RRsets), withdraw them, read back what the directory answers, and
//! ask `whoami`. Every request is signed with the terminal's key, so all of this also works
//! when the directory only answers signed lookups. Servers are tried in the order given.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use zones::identity::CallingCode;
use zones::key::TsigKey;

use crate::discover::AddressSet;
use crate::exchange::{ExchangeError, exchange};
use crate::tls::Channel;

/// Why a conversation with the directory failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
    #[error("the directory refused the update ({rcode}): {hint}")]
    Refused {
        rcode: ResponseCode,
        hint: &'static str,
    },
    #[error("calling code {0} is not registered in the directory; ask the operator to register it")]
    NotRegistered(CallingCode),
    #[error("the directory answered {0}")]
    Server(ResponseCode),
    #[error("no directory server is configured")]
    NoServer,
}

impl ClientError {
    /// Errors a person must fix: retrying soon cannot help.
    pub fn needs_a_person(&self) -> bool {
        match self {
            Self::Exchange(e) => e.needs_a_person(),
            Self::Refused { .. } | Self::NotRegistered(_) | Self::NoServer => true,
            Self::Server(_) => false,
        }
    }
}

/// A terminal's view of the directory.
#[derive(Debug, Clone)]
pub struct DirectoryClient {
    pub servers: Vec<SocketAddr>,
    pub zone: Name,
    pub code: CallingCode,
    pub key: TsigKey,
    pub timeout: Duration,
    /// UDP and TCP, or DNS over TLS to a pinned certificate.
    pub channel: Channel,
}

impl DirectoryClient {
    /// `<code>.<zone>`.
    pub fn owner(&self) -> Name {
        Name::from_ascii(self.code.as_str())
            .and_then(|label| label.append_domain(&self.zone))
            .expect("a calling code under a valid zone is a valid name")
    }

    /// Sends to each server in turn until one answers.
    async fn ask(&self, message: &Message) -> Result<Message, ClientError> {
        let mut last = ClientError::NoServer;
        for server in &self.servers {
            match exchange(
                *server,
                message.clone(),
                Some(&self.key),
                self.timeout,
                &self.channel,
            )
            .await
            {
                Ok(answer) => return Ok(answer),
                Err(e) if e.needs_a_person() => return Err(e.into()),
                Err(e) => last = e.into(),
            }
        }
        Err(last)
    }

    /// Replaces the A and AAAA RRsets with `set` in one UPDATE; returns the granted lease.
    pub async fn publish(
        &self,
        set: &AddressSet,
        ttl: u32,
        lease: Option<u32>,
    ) -> Result<Option<u32>, ClientError> {
        let owner = self.owner();
        let mut updates = vec![
            delete_rrset(&owner, RecordType::A),
            delete_rrset(&owner, RecordType::AAAA),
        ];
        updates.extend(
            set.v4
                .iter()
                .map(|a| Record::from_rdata(owner.clone(), ttl, RData::A(A::from(*a)))),
        );
        updates.extend(
            set.v6
                .iter()
                .map(|a| Record::from_rdata(owner.clone(), ttl, RData::AAAA(AAAA::from(*a)))),
        );
        let mut message = update_message(&self.zone, updates);
        if let Some(lease) = lease {
            let mut edns = Edns::new();
            let option =
                EdnsOption::Unknown(zones::lease::OPTION_CODE, zones::lease::encode(lease));
            edns.options_mut().insert(option);
            message.set_edns(edns);
        }
        let answer = self.ask(&message).await?;
        self.check_update(&answer)?;
        Ok(granted_lease(&answer))
    }

    /// Removes both RRsets: callers then see the terminal as offline (NODATA).
    pub async fn withdraw(&self) -> Result<(), ClientError> {
        let owner = self.owner();
        let updates = vec![
            delete_rrset(&owner, RecordType::A),
            delete_rrset(&owner, RecordType::AAAA),
        ];
        let answer = self.ask(&update_message(&self.zone, updates)).await?;
        self.check_update(&answer)
    }

    fn check_update(&self, answer: &Message) -> Result<(), ClientError> {
        match answer.metadata.response_code {
            ResponseCode::NoError => Ok(()),
            ResponseCode::Refused => Err(ClientError::Refused {
                rcode: ResponseCode::Refused,
                hint: "the key may change only its own code's A and AAAA records; check --code, --zone and the address limits",
            }),
            ResponseCode::NotAuth => Err(ClientError::Refused {
                rcode: ResponseCode::NotAuth,
                hint: "the directory is not authoritative for this zone, or rejected the key; check --zone and the key file",
            }),
            rcode => Err(ClientError::Server(rcode)),
        }
    }

    /// What the directory answers for this terminal now.
    pub async fn published(&self) -> Result<AddressSet, ClientError> {
        let mut set = AddressSet::default();
        for rtype in [RecordType::A, RecordType::AAAA] {
            let answer = self.ask(&query_message(self.owner(), rtype)).await?;
            match answer.metadata.response_code {
                ResponseCode::NoError => {}
                ResponseCode::NXDomain => {
                    return Err(ClientError::NotRegistered(self.code.clone()));
                }
                rcode => return Err(ClientError::Server(rcode)),
            }
            for record in &answer.answers {
                match &record.data {
                    RData::A(a) => set.v4.push(a.0),
                    RData::AAAA(a) => set.v6.push(a.0),
                    _ => {}
                }
            }
        }
        Ok(set)
    }

    /// The addresses the directory sees this terminal's queries come from: over IPv4 from
    /// IPv4 servers, over IPv6 from IPv6 servers.
    pub async fn whoami(&self) -> Vec<IpAddr> {
        let mut seen = Vec::new();
        let name = Name::from_ascii("whoami")
            .and_then(|l| l.append_domain(&self.zone))
            .expect("whoami under a valid zone is a valid name");
        for family_v4 in [true, false] {
            let Some(server) = self.servers.iter().find(|s| s.is_ipv4() == family_v4) else {
                continue;
            };
            let rtype = if family_v4 {
                RecordType::A
            } else {
                RecordType::AAAA
            };
            let message = query_message(name.clone(), rtype);
            let Ok(answer) = exchange(
                *server,
                message,
                Some(&self.key),
                self.timeout,
                &self.channel,
            )
            .await
            else {
                continue;
            };
            seen.extend(answer.answers.iter().filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            }));
        }
        seen
    }
}

/// A random message id from the operating system.
pub fn random_id() -> u16 {
    let mut bytes = [0u8; 2];
    let _ = getrandom::fill(&mut bytes);
    u16::from_le_bytes(bytes)
}

pub(crate) fn update_message(zone: &Name, updates: Vec<Record>) -> Message {
    let mut message = Message::new(random_id(), MessageType::Query, OpCode::Update);
    let mut zone_section = Query::query(zone.clone(), RecordType::SOA);
    zone_section.set_query_class(DNSClass::IN);
    message.add_query(zone_section);
    message.authorities = updates;
    message
}

/// A standard query for `name` and `rtype`.
pub fn query_message(name: Name, rtype: RecordType) -> Message {
    let mut message = Message::new(random_id(), MessageType::Query, OpCode::Query);
    message.add_query(Query::query(name, rtype));
    message
}

fn delete_rrset(owner: &Name, rtype: RecordType) -> Record {
    let mut record = Record::update0(owner.clone(), 0, rtype);
    record.dns_class = DNSClass::ANY;
    record
}

fn granted_lease(answer: &Message) -> Option<u32> {
    match answer.edns.as_ref()?.option(EdnsCode::UL)? {
        EdnsOption::Unknown(_, data) => zones::lease::decode(data),
        _ => None,
    }
}
