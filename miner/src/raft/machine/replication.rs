//! Log replication (Raft §5.3, §5.4): AppendEntries and its answers, the consistency
//! check and truncation, acks that certify a block, advancing and applying the commit index.

use super::*;

/// The fields of a follower's AppendEntries answer ([`Body::AppendResponse`]).
#[derive(Debug)]
pub(super) struct AppendResponse {
    pub success: bool,
    pub match_index: u64,
    pub last_index: u64,
    pub commit_index: u64,
    pub acks: Vec<Ack>,
}

impl RaftMachine {
    /// Checks that `entries`, to follow `prev_index`, are blocks where they say they are,
    /// sealed by servers, in terms that never decrease and never pass `term`, and that
    /// none contradicts an entry this server committed (Leader Completeness: an honest
    /// leader holds every committed entry).
    pub(super) fn check_entries(
        &self,
        sender: Address,
        term: u64,
        prev_index: u64,
        prev_term: u64,
        entries: &[Entry],
        certificates: usize,
    ) -> Result<(), RaftError> {
        let malformed = |reason: String| RaftError::MalformedMessage {
            sender,
            what: "append entries",
            reason,
        };
        if certificates > MAX_CERTIFICATES_PER_APPEND {
            return Err(malformed(format!(
                "{certificates} certificates, at most {MAX_CERTIFICATES_PER_APPEND}"
            )));
        }
        if entries.len() > MAX_ENTRIES_PER_APPEND {
            return Err(malformed(format!(
                "{} entries, at most {MAX_ENTRIES_PER_APPEND}",
                entries.len()
            )));
        }
        let mut last_term = prev_term;
        for (k, entry) in entries.iter().enumerate() {
            let index = prev_index + 1 + k as u64;
            if index <= self.commit_index
                && self.term_at(index).is_some_and(|held| held != entry.term)
            {
                return Err(malformed(format!(
                    "entry {index} of term {} conflicts with the committed entry of term {}",
                    entry.term,
                    self.term_at(index).unwrap_or_default()
                )));
            }
            if entry.term < last_term || entry.term > term {
                return Err(malformed(format!(
                    "entry {index} of term {} after term {last_term}, in term {term}",
                    entry.term
                )));
            }
            last_term = entry.term;
            if let Some(block) = &entry.block {
                let position = EntryData::of_header(&block.header)?;
                if position.index != index || position.term != entry.term {
                    return Err(malformed(format!(
                        "entry {index} of term {} holds a block placed at {} of term {}",
                        entry.term, position.index, position.term
                    )));
                }
                if !self.servers.contains(&block.header.producer) {
                    return Err(RaftError::NotServer {
                        height: block.header.height,
                        producer: block.header.producer,
                    });
                }
                verify_signed_seal(&block.header)?;
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_append_entries(
        &mut self,
        now: u64,
        leader: Address,
        term: u64,
        prev_index: u64,
        prev_term: u64,
        entries: Vec<Entry>,
        leader_commit: u64,
        certificates: Vec<(u64, Vec<u8>)>,
        out: &mut Vec<VoteOutput>,
    ) -> Result<(), EngineError> {
        if self.role == Role::Leader && term == self.term {
            return Err(reject(RaftError::MalformedMessage {
                sender: leader,
                what: "append entries",
                reason: format!("a second leader in term {term}"),
            }));
        }
        self.check_entries(
            leader,
            term,
            prev_index,
            prev_term,
            &entries,
            certificates.len(),
        )
        .map_err(reject)?;
        // §5.1 and §5.2: a current leader makes us (even a candidate of its term) follow it.
        self.become_follower(term, Some(leader), out);
        self.last_leader_contact = Some(now);

        // What this server committed matches every leader's log (Leader Completeness):
        // say so, as etcd does, and the leader sends what follows.
        if prev_index < self.commit_index {
            let committed = self.commit_index;
            self.reply_append(leader, true, committed, Vec::new(), out);
            return Ok(());
        }
        // §5.3: the consistency check on the entry before the new ones.
        if self.term_at(prev_index) != Some(prev_term) {
            let hint = prev_index.saturating_sub(1).min(self.last_index());
            self.reply_append(leader, false, hint, Vec::new(), out);
            return Ok(());
        }
        let mut index = prev_index;
        for entry in entries {
            let next = index + 1;
            if next <= self.last_index() {
                if self.term_at(next) == Some(entry.term) {
                    // Same index and term: the same entry (Log Matching).
                    index = next;
                    continue;
                }
                if next <= self.commit_index {
                    // Refused before anything changed (see `check_entries`).
                    break;
                }
                // §5.3: a conflicting entry and all that follow it go.
                let keep = usize::try_from(next - self.base_index - 1).unwrap_or(usize::MAX);
                self.log.truncate(keep);
                self.signed.retain(|i, _| *i < next);
                self.certificates.retain(|i, _| *i < next);
                self.dirty = true;
            }
            if self.uncommitted() >= MAX_UNCOMMITTED_ENTRIES as u64 {
                break;
            }
            self.log.push(entry);
            self.dirty = true;
            index = next;
        }
        let matched = index;
        for (i, certificate) in certificates {
            if i > self.commit_index && i <= matched && self.certificate_fits(i, &certificate) {
                self.certificates.insert(i, certificate);
            }
        }
        self.commit_up_to(leader_commit.min(matched), out);
        // Our acks: only when our log ends, as far as the leader knows, in an entry of the
        // leader's term (see `Certificate`).
        let acks = if self.term_at(matched) == Some(self.term) {
            self.sign_acks(leader_commit.max(self.base_index), matched)
        } else {
            Vec::new()
        };
        self.reply_append(leader, true, matched, acks, out);
        Ok(())
    }

    /// True when `certificate` proves the block this log holds at `index`.
    pub(super) fn certificate_fits(&self, index: u64, certificate: &[u8]) -> bool {
        let Some(Entry {
            term,
            block: Some(block),
        }) = self.entry(index)
        else {
            return false;
        };
        check_certificate(
            &self.servers,
            block.header.height,
            &block.hash(),
            *term,
            certificate,
        )
        .is_ok()
    }

    pub(super) fn reply_append(
        &self,
        to: Address,
        success: bool,
        match_index: u64,
        acks: Vec<Ack>,
        out: &mut Vec<VoteOutput>,
    ) {
        let body = Body::AppendResponse {
            to,
            term: self.term,
            success,
            match_index,
            last_index: self.last_index(),
            commit_index: self.commit_index,
            acks,
        };
        self.send(body, out);
    }

    /// This server's ack of the block at `index`, signed once per (block, term).
    pub(super) fn sign_ack(&mut self, index: u64) -> Option<Ack> {
        let key = self.key.as_ref()?;
        let block = self.entry(index)?.block.as_ref()?;
        let (hash, height) = (block.hash(), block.header.height);
        let signature = match self.signed.get(&index) {
            Some((h, t, signature)) if *h == hash && *t == self.term => *signature,
            _ => {
                let signature = key.sign(&ack_digest(self.term, height, &hash));
                self.signed.insert(index, (hash, self.term, signature));
                signature
            }
        };
        Some(Ack {
            height,
            hash,
            signature,
        })
    }

    /// Acks of the blocks held in `(after, through]`, the earliest first and at most
    /// [`MAX_ACKS_PER_RESPONSE`]: the leader commits in order, and asks again.
    pub(super) fn sign_acks(&mut self, after: u64, through: u64) -> Vec<Ack> {
        (after.max(self.base_index) + 1..=through)
            .filter_map(|i| self.sign_ack(i))
            .take(MAX_ACKS_PER_RESPONSE)
            .collect()
    }

    /// A follower's answer to AppendEntries (§5.3): on success its match index moves up
    /// and its acks count toward commitment; on failure its next index backs off.
    pub(super) fn on_append_response(
        &mut self,
        now: u64,
        follower: Address,
        follower_key: chain::PublicKey,
        response: AppendResponse,
        out: &mut Vec<VoteOutput>,
    ) -> Result<(), EngineError> {
        let kept = self.check_append_response(follower, follower_key, &response)?;
        let AppendResponse {
            success,
            match_index,
            last_index,
            commit_index,
            ..
        } = response;
        let last = self.last_index();
        let Some(progress) = self.progress.get_mut(&follower) else {
            return Ok(());
        };
        progress.recent_active = true;
        progress.heard_at = Some(now);
        progress.commit_index = commit_index;
        if success {
            progress.match_index = progress.match_index.max(match_index);
            progress.next_index = progress.next_index.max(progress.match_index + 1);
            for (index, signature) in kept {
                self.acks.entry(index).or_default().insert(
                    follower,
                    SignedAck {
                        key: follower_key,
                        signature,
                    },
                );
            }
            let committed = self.commit_index;
            self.advance_commit(out);
            if self.commit_index > committed {
                // Tell every follower at once, with the certificates, rather than at the
                // next heartbeat.
                self.broadcast_append(out);
                return Ok(());
            }
        } else {
            // §5.3: back off nextIndex and retry; the follower's last index skips the
            // entries it cannot hold.
            let backed = progress
                .next_index
                .saturating_sub(1)
                .min(last_index.saturating_add(1));
            progress.next_index = backed.max(progress.match_index + 1).max(1);
        }
        // Retry at once while the log can serve the follower; one that needs entries
        // compacted away gets heartbeats only, until its node syncs the certified blocks
        // (retrying at once would bounce refusals back and forth at network speed).
        let base = self.base_index;
        let retry = self
            .progress
            .get(&follower)
            .is_some_and(|p| p.next_index > base && (p.next_index <= last || !success));
        if retry {
            self.send_append(follower, out);
        }
        Ok(())
    }

    /// Checks an append response from `follower` before anything of it is kept: this node
    /// leads, the sender follows, the response is well formed and every ack's signature
    /// holds. Gives the acks that name an entry not yet committed, with their log index.
    fn check_append_response(
        &self,
        follower: Address,
        follower_key: chain::PublicKey,
        response: &AppendResponse,
    ) -> Result<Vec<(u64, Signature)>, EngineError> {
        if self.role != Role::Leader {
            return Err(ignored(format!(
                "append response while {} in term {}",
                self.role.name(),
                self.term
            )));
        }
        if !self.progress.contains_key(&follower) {
            return Err(ignored(format!(
                "append response from {follower}, not a follower"
            )));
        }
        if response.acks.len() > MAX_ACKS_PER_RESPONSE {
            return Err(reject(RaftError::MalformedMessage {
                sender: follower,
                what: "append response",
                reason: format!(
                    "{} acks, at most {MAX_ACKS_PER_RESPONSE}",
                    response.acks.len()
                ),
            }));
        }
        if response.success && response.match_index > self.last_index() {
            return Err(reject(RaftError::MalformedMessage {
                sender: follower,
                what: "append response",
                reason: format!(
                    "matches through {}, past the leader's last index {}",
                    response.match_index,
                    self.last_index()
                ),
            }));
        }
        // Check every ack before keeping any.
        let mut kept = Vec::new();
        if response.success {
            for ack in &response.acks {
                let index = (self.commit_index + 1..=response.match_index).find(|i| {
                    self.entry(*i)
                        .and_then(|e| e.block.as_ref())
                        .is_some_and(|b| b.hash() == ack.hash && b.header.height == ack.height)
                });
                follower_key
                    .verify(
                        &ack_digest(self.term, ack.height, &ack.hash),
                        &ack.signature,
                    )
                    .map_err(|e| {
                        reject(RaftError::BadAck {
                            hash: ack.hash,
                            signer: follower,
                            reason: e.to_string(),
                        })
                    })?;
                if let Some(index) = index {
                    kept.push((index, ack.signature));
                }
            }
        }
        Ok(kept)
    }

    /// §5.3 and §5.4.2: the highest index of this term held by a majority is committed,
    /// with everything before it; each block's certificate is the acks gathered for it.
    pub(super) fn advance_commit(&mut self, out: &mut Vec<VoteOutput>) {
        if self.role != Role::Leader {
            return;
        }
        let mut target = None;
        let mut n = self.last_index();
        while n > self.commit_index {
            match self.term_at(n) {
                Some(t) if t == self.term => {
                    let holders = 1 + self
                        .progress
                        .values()
                        .filter(|p| p.match_index >= n)
                        .count();
                    if holders >= self.majority() {
                        target = Some(n);
                        break;
                    }
                }
                // Figure 8: never count replicas of an earlier term's entry.
                _ => break,
            }
            n -= 1;
        }
        let Some(target) = target else { return };
        let mut certified = self.commit_index;
        for i in self.commit_index + 1..=target {
            if self.entry(i).is_some_and(|e| e.block.is_some()) {
                let Some(own) = self.sign_ack(i) else { break };
                let Some(key) = self.key.as_ref().map(SecretKey::public_key) else {
                    break;
                };
                let mut acks = vec![SignedAck {
                    key,
                    signature: own.signature,
                }];
                if let Some(theirs) = self.acks.get(&i) {
                    acks.extend(theirs.values().copied());
                }
                if acks.len() < self.majority() {
                    break;
                }
                let certificate = Certificate {
                    term: self.term,
                    acks,
                };
                self.certificates.insert(i, certificate.encode());
            }
            certified = i;
        }
        self.commit_up_to(certified, out);
    }

    /// Commits entries in order through `target`, each block with its certificate; stops
    /// at a block whose certificate has not arrived.
    pub(super) fn commit_up_to(&mut self, target: u64, out: &mut Vec<VoteOutput>) {
        while self.commit_index < target {
            let i = self.commit_index + 1;
            let Some(entry) = self.entry(i) else { break };
            if let Some(block) = &entry.block {
                let Some(certificate) = self.certificates.get(&i) else {
                    break;
                };
                out.push(VoteOutput::Commit {
                    block: Box::new(block.clone()),
                    certificate: certificate.clone(),
                });
            }
            self.commit_index = i;
        }
        self.acks.retain(|i, _| *i > self.commit_index);
        self.signed.retain(|i, _| *i > self.commit_index);
        self.compact();
    }

    /// Forgets committed entries beyond the repair window, once the chain holds them.
    pub(super) fn compact(&mut self) {
        let keep_from = self
            .commit_index
            .min(self.head_index)
            .saturating_sub(COMMITTED_WINDOW as u64);
        if keep_from <= self.base_index || keep_from > self.last_index() {
            return;
        }
        let Some(base_term) = self.term_at(keep_from) else {
            return;
        };
        let drop = usize::try_from(keep_from - self.base_index).unwrap_or(usize::MAX);
        self.log.drain(..drop);
        self.base_index = keep_from;
        self.base_term = base_term;
        self.certificates.retain(|i, _| *i > keep_from);
    }

    pub(super) fn broadcast_append(&mut self, out: &mut Vec<VoteOutput>) {
        let followers: Vec<Address> = self.progress.keys().copied().collect();
        for follower in followers {
            self.send_append(follower, out);
        }
    }

    /// AppendEntries for one follower: the entries from its nextIndex (as many as fit),
    /// and the certificates of committed blocks it has not committed yet.
    pub(super) fn send_append(&mut self, follower: Address, out: &mut Vec<VoteOutput>) {
        let Some(progress) = self.progress.get(&follower).copied() else {
            return;
        };
        // Entries before the base are compacted: the follower's node must sync those
        // blocks from the chain (with their certificates) before the log can be repaired.
        let prev_index = progress
            .next_index
            .saturating_sub(1)
            .clamp(self.base_index, self.last_index());
        let prev_term = self.term_at(prev_index).unwrap_or(self.base_term);
        let mut budget = APPEND_BUDGET_BYTES;
        let mut entries = Vec::new();
        let mut index = prev_index;
        // A follower behind the base could not use the entries: a heartbeat will do.
        let serveable = progress.next_index > self.base_index;
        while let Some(entry) = self.entry(index + 1).filter(|_| serveable) {
            let size = borsh::object_length(entry).unwrap_or(usize::MAX);
            if (!entries.is_empty() && size > budget) || entries.len() >= MAX_ENTRIES_PER_APPEND {
                break;
            }
            budget = budget.saturating_sub(size);
            entries.push(entry.clone());
            index += 1;
        }
        let mut certificates = Vec::new();
        // A follower reports its own commit index; one ahead of ours needs nothing (and
        // must not make an inverted range).
        let (from, through) = (
            progress.commit_index.saturating_add(1),
            self.commit_index.min(index),
        );
        let wanted = if from <= through {
            self.certificates.range(from..=through)
        } else {
            self.certificates.range(0..0)
        };
        for (i, certificate) in wanted.take(MAX_CERTIFICATES_PER_APPEND) {
            if certificate.len() > budget {
                break;
            }
            budget -= certificate.len();
            certificates.push((*i, certificate.clone()));
        }
        let body = Body::AppendEntries {
            to: follower,
            term: self.term,
            prev_index,
            prev_term,
            entries,
            leader_commit: self.commit_index,
            certificates,
        };
        self.send(body, out);
    }
}
