use super::*;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct V1 {
    a: u32,
}
impl Record for V1 {}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct V2 {
    a: u32,
    b: Option<String>,
}
impl Record for V2 {
    const VERSION: u8 = 2;
    fn decode_older(table: &'static str, version: u8, body: &[u8]) -> Result<V2, StorageError> {
        match version {
            1 => decode_body::<V1>(table, body).map(|old| V2 { a: old.a, b: None }),
            _ => unreachable!("decode only passes older versions"),
        }
    }
}

#[test]
fn a_newer_record_reads_its_own_and_older_versions() {
    let old = encode(&V1 { a: 7 }).unwrap();
    assert_eq!(old[0], 1);
    assert_eq!(decode::<V2>("t", &old).unwrap(), V2 { a: 7, b: None });
    let new = encode(&V2 {
        a: 8,
        b: Some("x".into()),
    })
    .unwrap();
    assert_eq!(new[0], 2);
    assert_eq!(decode::<V2>("t", &new).unwrap().b.as_deref(), Some("x"));
}

#[test]
fn a_version_1_pool_record_reads_as_the_current_version_with_defaults() {
    let v1 = PoolRecordV1 {
        name: "vms".into(),
        cidr: "10.0.0.0/24".parse().unwrap(),
        gateway: Some("10.0.0.1".parse().unwrap()),
        reserved: vec!["10.0.0.9".parse().unwrap()],
        labels: Labels::from([("env".into(), "prod".into())]),
        description: "d".into(),
        created_at: Stamp(7),
        capacity: 252,
        allocated: 3,
    };
    let mut bytes = vec![1u8];
    bytes.extend(postcard::to_allocvec(&v1).unwrap());
    let read: PoolRecord = decode("core_pools", &bytes).unwrap();
    assert_eq!(read, PoolRecord::from_v1(v1.clone()));
    assert_eq!((read.name.as_str(), read.allocated), ("vms", 3));
    assert_eq!((read.revision, read.weight), (1, 100));
    assert_eq!(read.max_utilization_ppm, 1_000_000);
    assert!(read.ranges.is_empty() && !read.frozen && read.dns.is_empty());
    let again = encode(&read).unwrap();
    assert_eq!(again[0], 3);
    assert_eq!(decode::<PoolRecord>("core_pools", &again).unwrap(), read);
}

#[test]
fn a_version_2_pool_record_reads_as_an_address_pool() {
    let v3 = PoolRecord::from_v1(PoolRecordV1 {
        name: "vms".into(),
        cidr: "10.0.0.0/24".parse().unwrap(),
        gateway: None,
        reserved: vec![],
        labels: Labels::new(),
        description: String::new(),
        created_at: Stamp(7),
        capacity: 254,
        allocated: 0,
    });
    // Version 2 is version 3 without its last two fields (postcard writes `None` as one 0
    // byte each).
    let mut bytes = encode(&v3).unwrap();
    assert_eq!(bytes.pop(), Some(0));
    assert_eq!(bytes.pop(), Some(0));
    bytes[0] = 2;
    let read: PoolRecord = decode("core_pools", &bytes).unwrap();
    assert_eq!(read, v3);
    assert_eq!(read.delegation_prefix_len, None);
}

#[test]
fn a_version_from_the_future_is_refused_naming_both() {
    let new = encode(&V2 { a: 8, b: None }).unwrap();
    let err = decode::<V1>("t", &new).unwrap_err().to_string();
    assert!(
        err.contains("format version 2") && err.contains("at most 1"),
        "{err}"
    );
    assert!(decode::<V1>("t", &[]).is_err());
    assert!(decode::<V1>("t", &[0, 1]).is_err());
    let mut trailing = encode(&V1 { a: 1 }).unwrap();
    trailing.push(0);
    assert!(decode::<V1>("t", &trailing).is_err());
}
