//! Policy lists from files beside the configuration (issue 14): thousands of numbers exported
//! from a directory, read at start and by every reload, a bad line refusing the reload whole.

use crate::support::{
    self, assert_refused, metrics::sample, Client, ConfigFile, Toml, HOST, SIMRING,
};

/// An organisation whose allow list is `lists/contoso.txt`, beside the configuration file.
fn toml(member: &ringfence::sim::FrontEnd) -> String {
    Toml::of(std::slice::from_ref(member))
        .rest(&format!(
            "[policy]\ndefault_organisation = \"contoso\"\n\
             [[organisations]]\nname = \"contoso\"\nhosts = [\"{HOST}\"]\n\
             allow_numbers_file = \"lists/contoso.txt\"\n"
        ))
        .build()
}

/// `count` full numbers as a directory export writes them: a byte-order mark, a header comment,
/// CRLF line ends, a trailing comment now and then.
fn export(first: u64, count: u64) -> String {
    let mut text = String::from("\u{feff}# exported from the directory\r\n");
    for i in 0..count {
        let n = first + i;
        if i % 100 == 0 {
            text += &format!("+{n} # desk {i}\r\n");
        } else {
            text += &format!("+{n}\r\n");
        }
    }
    text
}

fn write_list(file: &ConfigFile, text: &str) {
    let dir = file.dir().join("lists");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("contoso.txt"), text).unwrap();
}

async fn ring(client: &Client, number: u64) -> support::Reply {
    client
        .request(
            "POST",
            &format!("{SIMRING}?target=tel:%2B{number}"),
            HOST,
            &[],
            b"",
        )
        .await
}

const OLD: u64 = 14_255_550_000;
const NEW: u64 = 12_065_550_000;
const ENTRIES: u64 = 5_000;

#[tokio::test]
async fn an_allow_list_of_thousands_of_numbers_comes_from_a_file_and_a_bad_line_refuses_the_reload()
{
    let member = ringfence::sim::FrontEnd::start("fe1").await.unwrap();
    let file = ConfigFile::new(&toml(&member));
    write_list(&file, &export(OLD, ENTRIES));
    let server = file.serve().await;
    let client = Client::new(server.addrs()[0], None, false);
    assert!(
        server
            .shared()
            .snapshot()
            .config
            .summary()
            .contains(&format!(
                "contoso (enforce): allow {ENTRIES} number prefixes"
            )),
        "every line is an entry"
    );
    for listed in [OLD, OLD + 100, OLD + ENTRIES - 1] {
        assert_eq!(ring(&client, listed).await.status, 204, "+{listed}");
    }
    assert_refused(&ring(&client, OLD + ENTRIES).await, 403, "not_allowed");
    assert_refused(&ring(&client, NEW).await, 403, "not_allowed");
    let hash = server.shared().snapshot().config.hash().to_owned();

    // The new export has one bad line among thousands: the reload is refused and the old list
    // stays in force.
    let mut broken = export(NEW, ENTRIES);
    broken += "+1 206 555 0000\r\n";
    write_list(&file, &broken);
    assert_eq!(support::reload(&server).await, 422);
    assert_eq!(
        ring(&client, OLD).await.status,
        204,
        "the old list still allows"
    );
    assert_refused(&ring(&client, NEW).await, 403, "not_allowed");
    let m = support::scrape(&server).await;
    let count = |result| sample(&m, "ringfence_config_reloads_total", &[("result", result)]);
    assert_eq!(count("failure"), Some(1.0));
    assert_eq!(count("success"), Some(0.0));
    assert_eq!(server.shared().snapshot().config.hash(), hash);

    // Fixed, and with the configuration file itself unchanged, the reload takes the new list.
    write_list(&file, &export(NEW, ENTRIES));
    assert_eq!(support::reload(&server).await, 200);
    assert_eq!(ring(&client, NEW + ENTRIES - 1).await.status, 204);
    assert_refused(&ring(&client, OLD).await, 403, "not_allowed");
    let m = support::scrape(&server).await;
    assert_eq!(
        sample(
            &m,
            "ringfence_config_reloads_total",
            &[("result", "success")]
        ),
        Some(1.0)
    );
    let new_hash = server.shared().snapshot().config.hash().to_owned();
    assert_ne!(new_hash, hash, "a changed list file changes the hash");
    assert_eq!(
        sample(&m, "ringfence_config_info", &[("hash", &new_hash)]),
        Some(1.0)
    );
}
