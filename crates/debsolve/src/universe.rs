//! The in-memory universe the solver works over: every candidate package of
//! every source, grouped by (name, architecture) and sorted in dpkg order.
//!
//! Nothing here does I/O; the archive layer hands in parsed records.

use rustc_hash::FxHashMap as HashMap;

use debcore::package::{BinaryPackage, MultiArch};
use debcore::relation::{ArchQual, Relation};
use debcore::version::DebVersion;

/// A source as the solver sees it: a name for messages and a priority.
#[derive(Debug, Clone)]
pub struct SourceInfo {
    /// Recipe source name (shown in explanations and written in locks).
    pub name: String,
    /// apt-pin-like priority; higher wins.
    pub priority: i32,
}

/// Identifies one (name, architecture) instance.
pub type InstanceId = u32;

/// One installable (name, architecture) and its candidate versions.
#[derive(Debug, Clone)]
pub struct Instance {
    /// Package name.
    pub name: Box<str>,
    /// Concrete architecture (`all` packages count as the native architecture).
    pub arch: Box<str>,
    /// Record indices, ascending in dpkg version order, one per distinct version.
    /// Candidate `k` (1-based) in solver terms is `candidates[k - 1]`; 0 means "not installed".
    pub candidates: Vec<u32>,
}

/// A `Provides` entry: candidate `version` (1-based) of `instance` provides the
/// virtual name, optionally at a version.
#[derive(Debug, Clone)]
pub struct Provider {
    /// The providing instance.
    pub instance: InstanceId,
    /// 1-based candidate index within the instance.
    pub candidate: u32,
    /// `Provides: x (= v)` version, if any.
    pub version: Option<DebVersion>,
}

/// All candidates of all sources, indexed for the solver.
#[derive(Debug, Default)]
pub struct Universe {
    records: Vec<BinaryPackage>,
    sources: Vec<SourceInfo>,
    native: String,
    instances: Vec<Instance>,
    by_name: HashMap<Box<str>, Vec<InstanceId>>,
    providers: HashMap<Box<str>, Vec<Provider>>,
    /// Provides fields that could not be parsed (record index, message), reported by the solver.
    pub bad_provides: Vec<(u32, String)>,
}

impl Universe {
    /// Builds the universe. When several sources carry the same (name, arch,
    /// version), the record of the highest-priority source is kept (the first
    /// declared on ties), as apt treats one version with several origins.
    pub fn new(
        records: Vec<BinaryPackage>,
        sources: Vec<SourceInfo>,
        native_arch: &str,
    ) -> Universe {
        let mut u = Universe {
            records,
            sources,
            native: native_arch.to_string(),
            ..Default::default()
        };
        // Keys borrow from the records: no allocation per record.
        let mut index: HashMap<(&str, &str), InstanceId> = HashMap::default();
        index.reserve(u.records.len());
        for (ri, r) in u.records.iter().enumerate() {
            let arch: &str = if &*r.architecture == "all" {
                native_arch
            } else {
                &r.architecture
            };
            let id = *index.entry((&r.name, arch)).or_insert_with(|| {
                u.instances.push(Instance {
                    name: r.name.clone(),
                    arch: arch.into(),
                    candidates: Vec::new(),
                });
                (u.instances.len() - 1) as InstanceId
            });
            u.instances[id as usize].candidates.push(ri as u32);
        }
        drop(index);
        let (records, sources) = (&u.records, &u.sources);
        for inst in &mut u.instances {
            // Sort by version, then best source first, so dedup keeps the best.
            inst.candidates.sort_by(|&a, &b| {
                let (ra, rb) = (&records[a as usize], &records[b as usize]);
                ra.version
                    .cmp(&rb.version)
                    .then_with(|| {
                        sources[rb.source]
                            .priority
                            .cmp(&sources[ra.source].priority)
                    })
                    .then_with(|| ra.source.cmp(&rb.source))
            });
            inst.candidates
                .dedup_by(|b, a| records[*a as usize].version == records[*b as usize].version);
        }
        let mut by_name: HashMap<Box<str>, Vec<InstanceId>> = HashMap::default();
        for (id, inst) in u.instances.iter().enumerate() {
            by_name
                .entry(inst.name.clone())
                .or_default()
                .push(id as InstanceId);
        }
        u.by_name = by_name;
        for (id, inst) in u.instances.iter().enumerate() {
            for (k, &ri) in inst.candidates.iter().enumerate() {
                let r = &u.records[ri as usize];
                if r.provides.is_empty() {
                    continue;
                }
                match debcore::relation::parse_field(&r.provides) {
                    Ok(deps) => {
                        for d in deps {
                            for rel in d.alternatives {
                                let version = rel.constraint.map(|c| c.version);
                                u.providers
                                    .entry(rel.name.into_boxed_str())
                                    .or_default()
                                    .push(Provider {
                                        instance: id as InstanceId,
                                        candidate: k as u32 + 1,
                                        version,
                                    });
                            }
                        }
                    }
                    Err(e) => u.bad_provides.push((ri, e.to_string())),
                }
            }
        }
        u
    }

    /// The native architecture.
    pub fn native(&self) -> &str {
        &self.native
    }

    /// All records (indexed by the numbers in [`Instance::candidates`]).
    pub fn record(&self, ri: u32) -> &BinaryPackage {
        &self.records[ri as usize]
    }

    /// The sources, indexed like [`BinaryPackage::source`].
    pub fn sources(&self) -> &[SourceInfo] {
        &self.sources
    }

    /// An instance by id.
    pub fn instance(&self, id: InstanceId) -> &Instance {
        &self.instances[id as usize]
    }

    /// All instances.
    pub fn instances(&self) -> impl Iterator<Item = (InstanceId, &Instance)> {
        self.instances
            .iter()
            .enumerate()
            .map(|(i, x)| (i as InstanceId, x))
    }

    /// Instances carrying a real package of this name (one per architecture).
    pub fn instances_named(&self, name: &str) -> &[InstanceId] {
        self.by_name.get(name).map_or(&[], Vec::as_slice)
    }

    /// The packages providing a virtual name.
    pub fn providers_of(&self, name: &str) -> &[Provider] {
        self.providers.get(name).map_or(&[], Vec::as_slice)
    }

    /// The record of candidate `k` (1-based) of an instance.
    pub fn candidate(&self, id: InstanceId, k: u32) -> &BinaryPackage {
        self.record(self.instances[id as usize].candidates[k as usize - 1])
    }

    /// Number of candidates of an instance.
    pub fn candidate_count(&self, id: InstanceId) -> u32 {
        self.instances[id as usize].candidates.len() as u32
    }

    /// Source name of a record, for messages.
    pub fn source_name(&self, r: &BinaryPackage) -> &str {
        &self.sources[r.source].name
    }

    /// Whether a package of architecture `cand_arch` (concrete) with the given
    /// Multi-Arch value satisfies relation `rel` written by a package of
    /// architecture `depender_arch` — dpkg's `deparchsatisfied`. For Conflicts
    /// and Breaks (`negative`), `:any` matches every architecture.
    pub fn arch_satisfies(
        &self,
        rel: &Relation,
        depender_arch: &str,
        cand_arch: &str,
        multi_arch: MultiArch,
        negative: bool,
    ) -> bool {
        match &rel.arch {
            ArchQual::Implicit => multi_arch == MultiArch::Foreign || cand_arch == depender_arch,
            ArchQual::Any => multi_arch == MultiArch::Allowed || negative,
            ArchQual::Native => cand_arch == self.native,
            ArchQual::Named(a) => cand_arch == a,
        }
    }
}
