//! The command line: `ferroacs serve`, `migrate`, `config`, `token`, `user`, `device`.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::Config;
use crate::domain::usecases::{self, Actor, Ctx, NoServer};
use crate::store::Store;

#[derive(Parser, Debug)]
#[command(
    name = "ferroacs",
    version,
    about = "ferroacs: a TR-069 (CWMP) Auto-Configuration Server",
    after_help = "Examples:\n  \
        ferroacs serve                                   run on ./ferroacs.db (SQLite)\n  \
        FERROACS_DATABASE_URL=postgres://acs:pw@db/acs ferroacs serve\n  \
        ferroacs config example > ferroacs.toml          a commented config with every default\n  \
        ferroacs token create --name oss --role operator an API token (printed once)\n  \
        echo 's3cret' | ferroacs user add --username alice --role admin --password-stdin\n  \
        ferroacs device provision --oui 00259E --product-class EG8145V5 --serial 4857 \\\n      \
            --username cpe1 --password-stdin < pw.txt\n  \
        ferroacs device sessions 00259E-EG8145V5-4857     the device's session log\n  \
        ferroacs campaign create fw.json && ferroacs campaign start 1   a firmware campaign"
)]
pub struct Cli {
    /// Configuration file (default: ./ferroacs.toml when present).
    #[arg(long, global = true, env = "FERROACS_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the CWMP endpoint and the admin API until SIGINT/SIGTERM.
    Serve {
        /// Log JSON lines instead of text (same as [log] format = "json").
        #[arg(long)]
        json_logs: bool,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Configuration helpers.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// API tokens for scripts.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Operator accounts for the web UI.
    #[command(subcommand)]
    User(UserCmd),
    /// Devices.
    #[command(subcommand)]
    Device(DeviceCmd),
    /// Tasks: one CWMP RPC for a device, run in its next session.
    #[command(subcommand)]
    Task(TaskCmd),
    /// Data-model files (datamodel/) generated from the Broadband Forum XML.
    #[command(subcommand)]
    Datamodel(DatamodelCmd),
    /// VoIP lines (SIP accounts on line N of a device).
    #[command(subcommand)]
    Line(LineCmd),
    /// Presets (named desired states).
    #[command(subcommand)]
    Preset(PresetCmd),
    /// Phones that fetch configuration files (Polycom, Yealink, Grandstream, Cisco, Snom, Gigaset).
    #[command(subcommand)]
    Phone(PhoneCmd),
    /// The key that encrypts passwords stored in the database.
    #[command(subcommand)]
    Secrets(SecretsCmd),
    /// Campaigns: one action (e.g. firmware per model) rolled out in waves, windows and
    /// paced; a running server's scheduler carries them out.
    #[command(subcommand)]
    Campaign(CampaignCmd),
    /// Scheduled jobs: a task or a config backup for the devices of a query at each time of a
    /// cron expression; a running server's scheduler fires them.
    #[command(subcommand)]
    Schedule(ScheduleCmd),
}

#[derive(Subcommand, Debug)]
pub enum ScheduleCmd {
    /// Create a scheduled job from a JSON file (see `POST /api/v1/schedules`).
    Create { file: PathBuf },
    /// Replace a scheduled job with the JSON file's specification.
    Update { id: i64, file: PathBuf },
    /// Delete a scheduled job.
    Delete { id: i64 },
    /// Scheduled jobs with their next fire time and what the last fire did.
    List,
}

#[derive(Subcommand, Debug)]
pub enum SecretsCmd {
    /// Make a new random key current in secrets.key_file and re-encrypt every stored secret
    /// under it. The previous key stays in the file (for reading) until
    /// `reencrypt --forget-previous`; restart every node in between so all use the new key.
    RotateKey,
    /// Re-encrypt every stored secret under the current key (also seals clear-text values
    /// from older versions; `migrate` and `serve` do this too).
    Reencrypt {
        /// Afterwards drop the previous keys from secrets.key_file.
        #[arg(long)]
        forget_previous: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum CampaignCmd {
    /// Create a campaign (draft) from a JSON file (see `POST /api/v1/campaigns`).
    Create {
        file: PathBuf,
        /// Target these device ids (a CSV file: one id per line, or a column named
        /// `device_id`) instead of the file's target.
        #[arg(long)]
        devices_csv: Option<PathBuf>,
        /// Only count what the campaign would address, per model.
        #[arg(long)]
        dry_run: bool,
    },
    /// Start a draft campaign.
    Start { id: i64 },
    /// Pause: nothing new starts; running transfers finish.
    Pause {
        id: i64,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Resume a paused campaign.
    Resume { id: i64 },
    /// Abort: nothing new starts; running transfers complete.
    Abort { id: i64 },
    /// Progress per state, wave and model.
    Status { id: i64 },
    /// Campaigns, newest first.
    List,
}

#[derive(Subcommand, Debug)]
pub enum LineCmd {
    /// Import accounts from CSV. Header: device_id,line,password and any account fields
    /// (sip_user, auth_user, directory_number, registrar, ...). Bad rows are reported and
    /// skipped whole; the others are stored. Exits non-zero when a row was rejected.
    Import {
        file: PathBuf,
        /// Check every row, store nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// List the lines of a device (passwords are never shown).
    List { device: String },
}

#[derive(Subcommand, Debug)]
pub enum PhoneCmd {
    /// Create a phone (MAC in any spelling). Its lines are set with `PUT
    /// /api/v1/phones/{mac}/lines/{n}` or `ferroacs line import` (device id phone:<mac>).
    Add {
        mac: String,
        /// polycom, yealink, grandstream, cisco, snom or gigaset.
        #[arg(long)]
        vendor: String,
        /// e.g. vvx400, t46g, gxp2170, cp-8841, d785.
        #[arg(long)]
        model: String,
        #[arg(long)]
        profile: Option<String>,
        /// Repeatable.
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
    /// List phones with when they last fetched, what and which firmware they run.
    List,
    /// Print the provisioning URL of a phone (with its secret token) and the DHCP options to set.
    Url { mac: String },
    /// Import phones from CSV (header mac,vendor,model[,profile][,tags]).
    Import {
        file: PathBuf,
        #[arg(long)]
        dry_run: bool,
    },
    /// Print a new one-time activation code for the phone (any earlier one stops working).
    Activate { mac: String },
    /// Re-provision now: send SIP NOTIFY check-sync to the phone.
    Resync {
        mac: String,
        /// Ask the phone to reboot after fetching.
        #[arg(long)]
        reboot: bool,
    },
    /// Delete a phone with its lines.
    Delete { mac: String },
}

#[derive(Subcommand, Debug)]
pub enum PresetCmd {
    /// Create or replace a preset from a JSON file (the same body as PUT /api/v1/presets/{name}).
    Put { file: PathBuf },
    /// List presets.
    List,
    /// Delete a preset.
    Delete { name: String },
}

#[derive(Subcommand, Debug)]
pub enum DatamodelCmd {
    /// Regenerate datamodel/*.tsv from the BBF data-model XML.
    Generate {
        /// Folder with the BBF XML (tr-098-*.xml, tr-181-*.xml, ...).
        #[arg(long, default_value = "datamodel/bbf")]
        bbf: PathBuf,
        /// Output folder.
        #[arg(long, default_value = "datamodel")]
        out: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Print a fully commented configuration file with every default.
    Example,
    /// Print the effective configuration (file + environment), secrets hidden.
    Show,
    /// Validate the configuration and exit.
    Check,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    Admin,
    Operator,
    Viewer,
}

impl RoleArg {
    fn role(self) -> usecases::Role {
        match self {
            RoleArg::Admin => usecases::Role::Admin,
            RoleArg::Operator => usecases::Role::Operator,
            RoleArg::Viewer => usecases::Role::Viewer,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Create a token; it is printed once, on the last line of stdout. Only its hash is kept.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, value_enum)]
        role: RoleArg,
    },
    /// List tokens (never their values).
    List,
    /// Revoke a token by id.
    Revoke { id: i64 },
}

#[derive(Args, Debug)]
pub struct PasswordInput {
    /// Read the password from the first line of standard input.
    #[arg(long)]
    pub password_stdin: bool,
    /// The password on the command line (visible to other local users; prefer --password-stdin).
    #[arg(long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
}

impl PasswordInput {
    fn read(&self) -> anyhow::Result<Option<String>> {
        if let Some(p) = &self.password {
            return Ok(Some(p.clone()));
        }
        if self.password_stdin {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the password from stdin")?;
            let p = line.trim_end_matches(['\r', '\n']).to_string();
            if p.is_empty() {
                anyhow::bail!("the password read from stdin is empty");
            }
            return Ok(Some(p));
        }
        Ok(None)
    }
}

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Add an operator account (password hashed with argon2id).
    Add {
        #[arg(long)]
        username: String,
        #[arg(long, value_enum)]
        role: RoleArg,
        #[command(flatten)]
        password: PasswordInput,
    },
    /// List accounts.
    List,
    /// Remove an account.
    Remove { username: String },
    /// Set an account's password.
    Password {
        username: String,
        #[command(flatten)]
        password: PasswordInput,
    },
}

#[derive(Subcommand, Debug)]
pub enum DeviceCmd {
    /// List devices, optionally only those matching a query, e.g.
    /// `--query 'DeviceInfo.SoftwareVersion = "1.2" AND tag = lab'`.
    List {
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long)]
        cursor: Option<String>,
        #[arg(long, short)]
        query: Option<String>,
    },
    /// Show one device.
    Show { id: String },
    /// Create or update a device before its first contact (CWMP credentials, tags).
    Provision {
        #[arg(long)]
        oui: String,
        #[arg(long)]
        product_class: String,
        #[arg(long)]
        serial: String,
        /// The username the device sends (ManagementServer.Username).
        #[arg(long)]
        username: Option<String>,
        #[command(flatten)]
        password: PasswordInput,
        /// A tag; repeat for several.
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
    /// Print a device's session log, newest first.
    Sessions {
        id: String,
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// Delete a device and everything stored about it.
    Delete { id: String },
    /// Forget a device's CWMP credentials (its own and any issued to it), so the shared
    /// default ones open it again, e.g. after a factory reset; new ones are issued at its
    /// next session.
    ResetCredentials { id: String },
}

#[derive(Subcommand, Debug)]
pub enum TaskCmd {
    /// Queue a task, e.g. `ferroacs task create DEVICE-ID '{"rpc":"Reboot"}'` or
    /// `'{"rpc":"SetParameterValues","values":[{"name":"Device.X","value":"1"}]}'`.
    Create {
        device: String,
        /// The task as JSON: {"rpc": "<CWMP RPC name>", ...arguments}.
        task: String,
        /// Send a connection request so the device runs it now.
        #[arg(long)]
        connection_request: bool,
        /// Wait up to this many seconds for the task to finish.
        #[arg(long, default_value_t = 0)]
        wait: u64,
    },
    /// List tasks, newest first.
    List {
        #[arg(long)]
        device: Option<String>,
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Show one task as JSON.
    Show { id: i64 },
    /// Cancel a pending or running task.
    Cancel { id: i64 },
}

/// Entry point used by `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, naming the problem.
            let msg = format!("{e:#}").replace('\n', " ");
            let _ = writeln!(std::io::stderr(), "ferroacs: error: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    Config::load(cli.config.as_deref(), std::env::vars()).map_err(|e| anyhow::anyhow!("{e}"))
}

fn open_store(cfg: &Config) -> anyhow::Result<Store> {
    let store = Store::open(&cfg.database).map_err(|e| anyhow::anyhow!("{e}"))?;
    crate::domain::secrets::init(&store, &cfg.secrets, true).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(store)
}

fn secrets_cmd(cfg: &Config, cmd: &SecretsCmd) -> anyhow::Result<()> {
    use crate::secrets::{generate_key, write_key_file, Keyring};
    let e = |e: crate::error::Error| anyhow::anyhow!("{e}");
    let file = &cfg.secrets.key_file;
    let store = open_store(cfg)?;
    match cmd {
        SecretsCmd::RotateKey => {
            if cfg.secrets.key.is_some() {
                anyhow::bail!(
                    "secrets.key is set, so the key is not in a file ferroacs may rewrite: put a new key \
                     (openssl rand -hex 32) in secrets.key and the old one in secrets.previous_keys, \
                     restart, then run `ferroacs secrets reencrypt`"
                );
            }
            let mut keys = vec![generate_key()];
            keys.extend(store.keyring().hex_keys());
            let ring = Keyring::from_hex(&keys, "secrets.key_file").map_err(e)?;
            // The file first: if anything fails later, both keys are still there.
            write_key_file(file, &keys, false).map_err(e)?;
            store.set_keyring(ring);
            let r = crate::domain::secrets::reencrypt(&store).map_err(e)?;
            println!(
                "key {} is now current in {}; {} stored values re-encrypted. The previous key stays \
                 in the file for reading: restart every ferroacs node (all need this file), then run \
                 `ferroacs secrets reencrypt --forget-previous`.",
                store.keyring().current_id(),
                file.display(),
                r.values
            );
        }
        SecretsCmd::Reencrypt { forget_previous } => {
            let r = crate::domain::secrets::reencrypt(&store).map_err(e)?;
            println!(
                "{} stored values re-encrypted under key {}",
                r.values,
                store.keyring().current_id()
            );
            if *forget_previous {
                if cfg.secrets.key.is_some() {
                    println!("secrets.key is set: remove secrets.previous_keys from the configuration yourself");
                } else {
                    let current = store
                        .keyring()
                        .hex_keys()
                        .into_iter()
                        .take(1)
                        .collect::<Vec<_>>();
                    write_key_file(file, &current, false).map_err(e)?;
                    println!("previous keys removed from {}", file.display());
                }
            }
        }
    }
    Ok(())
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Config(ConfigCmd::Example) => {
            print!("{}", crate::config::example());
            Ok(())
        }
        Command::Config(ConfigCmd::Show) => {
            let cfg = load_config(&cli)?;
            print!("{}", cfg.redacted_toml());
            Ok(())
        }
        Command::Config(ConfigCmd::Check) => {
            load_config(&cli)?;
            println!("configuration is valid");
            Ok(())
        }
        Command::Serve { json_logs } => {
            let mut cfg = load_config(&cli)?;
            if *json_logs {
                cfg.log.format = crate::config::LogFormat::Json;
            }
            crate::telemetry::init(&cfg.log);
            let running = crate::app::start(cfg, None, true)?;
            running.wait();
            tracing::info!("stopped");
            Ok(())
        }
        Command::Secrets(cmd) => {
            let cfg = load_config(&cli)?;
            secrets_cmd(&cfg, cmd)
        }
        Command::Migrate => {
            let cfg = load_config(&cli)?;
            let store = open_store(&cfg)?;
            // `open` already applied pending migrations; say where the schema stands.
            let applied = store.migrate().map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "database schema is up to date ({} backend{})",
                store.backend_name(),
                if applied.is_empty() {
                    ""
                } else {
                    ", applied now"
                }
            );
            Ok(())
        }
        Command::Token(cmd) => token(&cli, cmd),
        Command::User(cmd) => user(&cli, cmd),
        Command::Device(cmd) => device(&cli, cmd),
        Command::Line(cmd) => line(&cli, cmd),
        Command::Preset(cmd) => preset(&cli, cmd),
        Command::Phone(cmd) => phone(&cli, cmd),
        Command::Task(cmd) => task(&cli, cmd),
        Command::Campaign(cmd) => campaign(&cli, cmd),
        Command::Schedule(cmd) => schedule(&cli, cmd),
        Command::Datamodel(DatamodelCmd::Generate { bbf, out }) => {
            let files =
                crate::datamodel::generate::generate(bbf).map_err(|e| anyhow::anyhow!("{e}"))?;
            std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
            for (name, text) in files {
                let path = out.join(&name);
                std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("wrote {}", path.display());
            }
            Ok(())
        }
    }
}

/// What a CLI command needs to run use cases: the configuration, the store, the services.
struct CliEnv {
    cfg: Config,
    store: Store,
    services: crate::domain::services::Services,
}

impl CliEnv {
    fn open(cli: &Cli) -> anyhow::Result<CliEnv> {
        let cfg = load_config(cli)?;
        let store = open_store(&cfg)?;
        // The server's listeners, as configured, are never a connection-request target.
        let own = [cfg.cwmp_listen(), cfg.api_listen()];
        let services = crate::domain::services::Services::new(&cfg, &store, &own)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(CliEnv {
            cfg,
            store,
            services,
        })
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx::new(
            &self.store,
            &self.cfg,
            &self.services,
            &crate::store::now_ms,
            std::sync::Arc::new(NoServer),
        )
    }
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> anyhow::Result<T> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    Ok(rt.block_on(f))
}

fn line(cli: &Cli, cmd: &LineCmd) -> anyhow::Result<()> {
    let env = CliEnv::open(cli)?;
    let store = &env.store;
    let e = |e: crate::error::Error| anyhow::anyhow!("{e}");
    match cmd {
        LineCmd::Import { file, dry_run } => {
            let csv = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            let report = block_on(usecases::voip::import_lines(
                &env.ctx(),
                &Actor::cli(),
                &csv,
                *dry_run,
            ))?
            .map_err(e)?;
            for r in &report.errors {
                println!(
                    "row {} ({} line {}): {}: {}",
                    r.row,
                    r.device_id.as_deref().unwrap_or("?"),
                    r.line.map(|l| l.to_string()).unwrap_or_else(|| "?".into()),
                    r.field,
                    r.message
                );
            }
            println!(
                "{} {} lines; {} rows rejected",
                if *dry_run { "would import" } else { "imported" },
                report.imported,
                report.rejected
            );
            if report.rejected > 0 {
                anyhow::bail!("{} rows rejected (listed above)", report.rejected);
            }
        }
        LineCmd::List { device } => {
            let lines = block_on(crate::domain::lines::list(store, device))?.map_err(e)?;
            println!("LINE\tSTATUS\tDEVICE STATUS\tSIP USER\tREGISTRAR\tFAULT");
            for l in &lines {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    l.line,
                    l.status,
                    l.device_status.as_deref().unwrap_or("-"),
                    l.account
                        .sip_user
                        .as_deref()
                        .or(l.account.auth_user.as_deref())
                        .unwrap_or("-"),
                    l.account.registrar.as_deref().unwrap_or("-"),
                    l.fault.as_deref().unwrap_or("")
                );
            }
        }
    }
    Ok(())
}

fn phone(cli: &Cli, cmd: &PhoneCmd) -> anyhow::Result<()> {
    use crate::domain::phones as ph;
    let env = CliEnv::open(cli)?;
    let e = |e: crate::error::Error| anyhow::anyhow!("{e}");
    let actor = Actor::cli();
    match cmd {
        PhoneCmd::Add {
            mac,
            vendor,
            model,
            profile,
            tags,
        } => {
            let input = ph::PhoneInput {
                mac: Some(mac.clone()),
                vendor: vendor.clone(),
                model: model.clone(),
                profile: profile.clone(),
                tags: (!tags.is_empty()).then(|| tags.clone()),
                ..ph::PhoneInput::default()
            };
            let view = block_on(usecases::phones::create(&env.ctx(), &actor, input))?.map_err(e)?;
            println!(
                "phone {} ({} {}) created; device id {} for its lines",
                view.mac, view.vendor, view.model, view.device_id
            );
            let mac = ph::parse_mac("mac", &view.mac).map_err(e)?;
            let urls =
                block_on(ph::urls(&env.store, &env.cfg, &env.services.phones, mac))?.map_err(e)?;
            println!("provisioning URL: {}", urls.url);
        }
        PhoneCmd::List => {
            let phones = block_on(ph::list(&env.store, None, 100_000))?.map_err(e)?;
            println!("MAC\tVENDOR\tMODEL\tPROFILE\tLAST SEEN\tSOURCE\tFIRMWARE\tLAST FILE");
            for p in &phones {
                let seen = p
                    .last_seen
                    .and_then(chrono::DateTime::from_timestamp_millis)
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_else(|| "never".into());
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    p.mac,
                    p.vendor,
                    p.model,
                    p.profile.as_deref().unwrap_or("-"),
                    seen,
                    p.last_source.as_deref().unwrap_or("-"),
                    p.firmware.as_deref().unwrap_or("-"),
                    p.last_file.as_deref().unwrap_or("-")
                );
            }
        }
        PhoneCmd::Url { mac } => {
            let mac = ph::parse_mac("mac", mac).map_err(e)?;
            let u =
                block_on(ph::urls(&env.store, &env.cfg, &env.services.phones, mac))?.map_err(e)?;
            println!("{}", u.url);
            println!("# {} asks for {} first", u.vendor, u.first_file);
            for d in &u.dhcp {
                println!("# DHCP: {d}");
            }
            if let Some(d) = &u.digest_url {
                println!("# with its HTTP Digest credentials instead of the token: {d}");
            }
            if let Some(c) = &u.cert_url {
                println!("# with its factory client certificate instead of the token: {c}");
            }
        }
        PhoneCmd::Activate { mac } => {
            let c =
                block_on(usecases::phones::activation_code(&env.ctx(), &actor, mac))?.map_err(e)?;
            println!("{}", c.code);
            println!("# URL: {}", c.url);
            if let (Some(g), Some(u)) = (&c.gigaset_code, &c.gigaset_url) {
                println!("# Gigaset code to type on the base: {g} (append #<Digest password> when it has Digest credentials)");
                println!("# Gigaset URL: {u}");
            }
            let until = chrono::DateTime::from_timestamp_millis(c.expires_at)
                .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                .unwrap_or_default();
            println!("# usable once until {until}");
        }
        PhoneCmd::Import { file, dry_run } => {
            let csv = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            let report = block_on(usecases::phones::import(&env.ctx(), &actor, &csv, *dry_run))?
                .map_err(e)?;
            for r in &report.errors {
                println!(
                    "row {} ({}): {}: {}",
                    r.row,
                    r.mac.as_deref().unwrap_or("?"),
                    r.field,
                    r.message
                );
            }
            println!(
                "{} {} phones; {} rows rejected",
                if *dry_run { "would import" } else { "imported" },
                report.imported,
                report.rejected
            );
            if report.rejected > 0 {
                anyhow::bail!("{} rows rejected (listed above)", report.rejected);
            }
        }
        PhoneCmd::Resync { mac, reboot } => {
            let r =
                block_on(usecases::phones::resync(&env.ctx(), &actor, mac, *reboot))?.map_err(e)?;
            match r.status {
                Some(s) => println!("NOTIFY check-sync to {}: answered {s}", r.target),
                None => println!("NOTIFY check-sync to {}: {}", r.target, r.outcome),
            }
        }
        PhoneCmd::Delete { mac } => {
            block_on(usecases::phones::delete(&env.ctx(), &actor, mac))?.map_err(e)?;
            println!("deleted");
        }
    }
    Ok(())
}

/// Device ids from a CSV file: one per line, or the `device_id` column when the first line
/// is a header naming it. Blank lines and `#` comments are ignored.
pub fn device_ids_from_csv(text: &str) -> Vec<String> {
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .peekable();
    let column = lines.peek().and_then(|h| {
        h.split(',')
            .position(|c| c.trim().trim_matches('"') == "device_id")
    });
    if column.is_some() {
        lines.next();
    }
    lines
        .filter_map(|l| {
            l.split(',')
                .nth(column.unwrap_or(0))
                .map(|c| c.trim().trim_matches('"').to_string())
        })
        .filter(|id| !id.is_empty())
        .collect()
}

fn campaign(cli: &Cli, cmd: &CampaignCmd) -> anyhow::Result<()> {
    use crate::domain::campaigns as c;
    let store = open_store(&load_config(cli)?)?;
    let e = |e: crate::error::Error| anyhow::anyhow!("{e}");
    let now = crate::store::now_ms();
    let show = |r: &crate::store::campaigns::CampaignRow| {
        println!(
            "campaign {} {:?}: {}{}",
            r.id,
            r.name,
            r.state,
            r.reason
                .as_deref()
                .map(|x| format!(" ({x})"))
                .unwrap_or_default()
        );
    };
    match cmd {
        CampaignCmd::Create {
            file,
            devices_csv,
            dry_run,
        } => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            let mut spec = c::CampaignSpec::parse(&text)
                .map_err(|err| anyhow::anyhow!("{}: {err}", file.display()))?;
            if let Some(csv) = devices_csv {
                let t = std::fs::read_to_string(csv)
                    .with_context(|| format!("reading {}", csv.display()))?;
                spec.target.query = None;
                spec.target.devices = device_ids_from_csv(&t);
            }
            if *dry_run {
                let d = block_on(c::dry_run(&store, &spec))?.map_err(e)?;
                println!("{}", serde_json::to_string_pretty(&d)?);
            } else {
                let (row, d) = block_on(c::create(&store, "cli", now, &spec))?.map_err(e)?;
                show(&row);
                println!(
                    "{} devices match: {} eligible in waves {:?}, {} compliant, {} skipped; start it with `ferroacs campaign start {}`",
                    d.matching, d.eligible, d.waves, d.compliant, d.skipped, row.id
                );
            }
        }
        CampaignCmd::Start { id } => {
            show(&block_on(c::start(&store, "cli", now, *id))?.map_err(e)?)
        }
        CampaignCmd::Pause { id, reason } => {
            show(&block_on(c::pause(&store, "cli", now, *id, reason))?.map_err(e)?)
        }
        CampaignCmd::Resume { id } => {
            show(&block_on(c::resume(&store, "cli", now, *id))?.map_err(e)?)
        }
        CampaignCmd::Abort { id } => {
            show(&block_on(c::abort(&store, "cli", now, *id))?.map_err(e)?)
        }
        CampaignCmd::Status { id } => {
            let id = *id;
            let row = store
                .get_campaign(id)
                .map_err(e)?
                .ok_or_else(|| anyhow::anyhow!("no campaign {id}"))?;
            show(&row);
            let p = block_on(c::progress(&store, &row, now))?.map_err(e)?;
            println!("{}", serde_json::to_string_pretty(&p)?);
        }
        CampaignCmd::List => {
            println!("ID\tSTATE\tWAVE\tNAME");
            for r in store.list_campaigns(None, 1000).map_err(e)? {
                println!("{}\t{}\t{}\t{}", r.id, r.state, r.current_wave, r.name);
            }
        }
    }
    Ok(())
}

fn schedule(cli: &Cli, cmd: &ScheduleCmd) -> anyhow::Result<()> {
    use crate::domain::schedules as sch;
    let store = open_store(&load_config(cli)?)?;
    let e = |e: crate::error::Error| anyhow::anyhow!("{e}");
    let now = crate::store::now_ms();
    let read = |file: &PathBuf| -> anyhow::Result<sch::ScheduleSpec> {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        sch::ScheduleSpec::parse(&text).map_err(|err| anyhow::anyhow!("{}: {err}", file.display()))
    };
    let show = |r: &sch::ScheduleRow| {
        let next = r
            .next_fire_at
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map(|t| t.to_rfc3339())
            .unwrap_or_else(|| "never".into());
        println!("schedule {} {:?}: next fire {next}", r.id, r.name);
    };
    match cmd {
        ScheduleCmd::Create { file } => {
            let spec = read(file)?;
            show(&block_on(sch::create(&store, "cli", now, &spec))?.map_err(e)?);
        }
        ScheduleCmd::Update { id, file } => {
            let spec = read(file)?;
            show(&block_on(sch::update(&store, "cli", now, *id, &spec))?.map_err(e)?);
        }
        ScheduleCmd::Delete { id } => {
            block_on(sch::delete(&store, "cli", now, *id))?.map_err(e)?;
            println!("schedule {id} deleted");
        }
        ScheduleCmd::List => {
            println!("ID\tENABLED\tNEXT FIRE (UTC)\tNAME\tLAST RESULT");
            for r in block_on(sch::list(&store, None, 1000))?.map_err(e)? {
                let next = r
                    .next_fire_at
                    .and_then(chrono::DateTime::from_timestamp_millis)
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_else(|| "-".into());
                println!(
                    "{}\t{}\t{next}\t{}\t{}",
                    r.id,
                    r.enabled != 0,
                    r.name,
                    r.last_result.as_deref().unwrap_or("")
                );
            }
        }
    }
    Ok(())
}

fn preset(cli: &Cli, cmd: &PresetCmd) -> anyhow::Result<()> {
    let env = CliEnv::open(cli)?;
    let store = &env.store;
    let e = |e: crate::error::Error| anyhow::anyhow!("{e}");
    match cmd {
        PresetCmd::Put { file } => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            let input: crate::domain::presets::PresetInput = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a preset in JSON", file.display()))?;
            let saved = block_on(usecases::voip::save_preset(
                &env.ctx(),
                &Actor::cli(),
                usecases::voip::SaveMode::Put,
                None,
                input,
                false,
            ))?
            .map_err(e)?;
            println!(
                "{} preset {} (revision {})",
                if saved.created { "created" } else { "updated" },
                saved.preset.name,
                saved.preset.revision
            );
        }
        PresetCmd::List => {
            let list = block_on(crate::domain::presets::list(store))?.map_err(e)?;
            println!("NAME\tPRIORITY\tEVENTS\tREVISION\tFILTER");
            for p in &list {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    p.name,
                    p.priority,
                    p.events.join(","),
                    p.revision,
                    p.filter
                );
            }
        }
        PresetCmd::Delete { name } => {
            block_on(usecases::voip::delete_preset(
                &env.ctx(),
                &Actor::cli(),
                name,
            ))?
            .map_err(e)?;
            println!("deleted preset {name}");
        }
    }
    Ok(())
}

fn token(cli: &Cli, cmd: &TokenCmd) -> anyhow::Result<()> {
    let env = CliEnv::open(cli)?;
    let e = |e: crate::error::Error| anyhow::anyhow!("{e}");
    match cmd {
        TokenCmd::Create { name, role } => {
            let t = block_on(usecases::admin::create_token(
                &env.ctx(),
                &Actor::cli(),
                name,
                role.role(),
            ))?
            .map_err(e)?;
            println!(
                "created token {} ({}, role {}); it is shown only once:",
                t.row.id, t.row.name, t.row.role
            );
            println!("{}", t.secret);
        }
        TokenCmd::List => {
            for t in env.store.list_tokens().map_err(e)? {
                println!(
                    "{}\t{}\t{}\t{}",
                    t.id,
                    t.name,
                    t.role,
                    if t.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "active"
                    }
                );
            }
        }
        TokenCmd::Revoke { id } => {
            block_on(usecases::admin::revoke_token(
                &env.ctx(),
                &Actor::cli(),
                *id,
            ))?
            .map_err(e)?;
            println!("revoked token {id}");
        }
    }
    Ok(())
}

fn user(cli: &Cli, cmd: &UserCmd) -> anyhow::Result<()> {
    let env = CliEnv::open(cli)?;
    let e = |e: crate::error::Error| anyhow::anyhow!("{e}");
    let need = |password: &PasswordInput| -> anyhow::Result<String> {
        password.read()?.ok_or_else(|| {
            anyhow::anyhow!("a password is required: pass --password-stdin and pipe it in")
        })
    };
    match cmd {
        UserCmd::Add {
            username,
            role,
            password,
        } => {
            let pw = need(password)?;
            let row = block_on(usecases::admin::create_user(
                &env.ctx(),
                &Actor::cli(),
                username,
                &pw,
                role.role(),
            ))?
            .map_err(e)?;
            println!("added user {} ({})", row.username, row.role);
        }
        UserCmd::List => {
            for u in env.store.list_users().map_err(e)? {
                println!("{}\t{}", u.username, u.role);
            }
        }
        UserCmd::Remove { username } => {
            block_on(usecases::admin::delete_user(
                &env.ctx(),
                &Actor::cli(),
                username,
            ))?
            .map_err(e)?;
            println!("removed user {username}");
        }
        UserCmd::Password { username, password } => {
            let pw = need(password)?;
            block_on(usecases::admin::set_user_password(
                &env.ctx(),
                &Actor::cli(),
                username,
                &pw,
            ))?
            .map_err(e)?;
            println!("changed the password of {username}");
        }
    }
    Ok(())
}

fn device(cli: &Cli, cmd: &DeviceCmd) -> anyhow::Result<()> {
    let env = CliEnv::open(cli)?;
    let store = &env.store;
    let e = |e: crate::error::Error| anyhow::anyhow!("{e}");
    match cmd {
        DeviceCmd::List {
            limit,
            cursor,
            query,
        } => {
            let filter =
                crate::domain::devices::parse_query(query.as_deref().unwrap_or("")).map_err(e)?;
            let rows = store
                .search_devices(&filter, cursor.as_deref(), *limit)
                .map_err(e)?;
            println!("ID\tSOFTWARE\tLAST INFORM\tSOURCE");
            for d in &rows {
                println!(
                    "{}\t{}\t{}\t{}",
                    d.id,
                    d.software_version,
                    d.last_inform.map(fmt_ms).unwrap_or_else(|| "never".into()),
                    d.last_source_ip
                );
            }
        }
        DeviceCmd::Show { id } => {
            let d = store
                .get_device(id)
                .map_err(e)?
                .ok_or_else(|| anyhow::anyhow!("no device {id}"))?;
            println!("id:               {}", d.id);
            println!(
                "oui/class/serial: {} / {} / {}",
                d.oui, d.product_class, d.serial_number
            );
            println!("manufacturer:     {}", d.manufacturer);
            println!("software:         {}", d.software_version);
            println!("hardware:         {}", d.hardware_version);
            println!("data model:       {}", d.root_model);
            println!("cwmp version:     {}", d.cwmp_version);
            println!(
                "last inform:      {}",
                d.last_inform.map(fmt_ms).unwrap_or_else(|| "never".into())
            );
            println!("last source ip:   {}", d.last_source_ip);
            println!("conn. request:    {}", d.connection_request_url);
            println!(
                "own credentials:  {}",
                if d.cwmp_username.is_some() {
                    "yes"
                } else {
                    "no (uses the default)"
                }
            );
        }
        DeviceCmd::Provision {
            oui,
            product_class,
            serial,
            username,
            password,
            tags,
        } => {
            let pw = password.read()?;
            if username.is_some() != pw.is_some() {
                anyhow::bail!("give both --username and a password (--password-stdin), or neither");
            }
            let id = crate::cwmp::device_id(oui, product_class, serial);
            let input = usecases::devices::ProvisionInput {
                oui: Some(oui.clone()),
                product_class: Some(product_class.clone()),
                serial_number: Some(serial.clone()),
                cwmp_username: username.clone(),
                cwmp_password: pw,
                clear_credentials: false,
                tags: (!tags.is_empty()).then(|| tags.clone()),
            };
            block_on(usecases::devices::provision(
                &env.ctx(),
                &Actor::cli(),
                &id,
                &input,
            ))?
            .map_err(e)?;
            println!("provisioned {id}");
        }
        DeviceCmd::Sessions { id, limit } => {
            let rows = store.list_session_logs(id, None, *limit).map_err(e)?;
            if rows.is_empty() {
                println!("no sessions logged for {id}");
            }
            for r in rows {
                println!(
                    "{}  {:>6} ms  {:<10} from {}  events [{}]  rpcs [{}]{}",
                    fmt_ms(r.started_at),
                    r.ended_at - r.started_at,
                    r.outcome,
                    r.source_ip,
                    r.events,
                    r.rpcs,
                    if r.faults.is_empty() || r.faults == "[]" {
                        String::new()
                    } else {
                        format!("  faults {}", r.faults)
                    }
                );
            }
        }
        DeviceCmd::Delete { id } => {
            block_on(usecases::devices::delete(&env.ctx(), &Actor::cli(), id))?.map_err(e)?;
            println!("deleted {id}");
        }
        DeviceCmd::ResetCredentials { id } => {
            block_on(usecases::devices::reset_credentials(
                &env.ctx(),
                &Actor::cli(),
                id,
            ))?
            .map_err(e)?;
            println!("credentials of {id} forgotten; the shared ones open it again");
        }
    }
    Ok(())
}

fn fmt_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|| ms.to_string())
}

fn task(cli: &Cli, cmd: &TaskCmd) -> anyhow::Result<()> {
    let env = CliEnv::open(cli)?;
    let store = &env.store;
    let e = |e: crate::error::Error| anyhow::anyhow!("{e}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a runtime")?;
    let show = |t: &crate::store::tasks::TaskRow| {
        let parse = |s: &Option<String>| {
            s.as_deref()
                .and_then(|x| serde_json::from_str::<serde_json::Value>(x).ok())
        };
        let v = serde_json::json!({
            "id": t.id, "device_id": t.device_id, "rpc": t.rpc, "status": t.status,
            "result": parse(&t.result),
            "fault": t.fault_code.map(|c| serde_json::json!({
                "code": c, "string": t.fault_string, "detail": parse(&t.fault_detail)
            })),
            "attempts": t.attempts, "created_by": t.created_by,
            "created_at": fmt_ms(t.created_at),
            "finished_at": t.finished_at.map(fmt_ms),
        });
        serde_json::to_string_pretty(&v).unwrap_or_default()
    };
    match cmd {
        TaskCmd::Create {
            device,
            task,
            connection_request,
            wait,
        } => {
            let spec: crate::domain::tasks::TaskSpec =
                serde_json::from_str(task).map_err(|err| {
                    anyhow::anyhow!(
                    "the task is not valid JSON of a task: {err}; e.g. '{{\"rpc\":\"Reboot\"}}'; \
                     RPCs: {}",
                    crate::domain::tasks::TASK_RPCS.join(", ")
                )
                })?;
            let opts = usecases::tasks::TaskOptions {
                connection_request: *connection_request,
                wait: None,
                expires_in: None,
            };
            let ctx = env.ctx();
            rt.block_on(async {
                let q = usecases::tasks::create(&ctx, &Actor::cli(), device, &spec, &opts)
                    .await
                    .map_err(e)?;
                let row = q.task;
                println!("queued task {} ({} on {})", row.id, row.rpc, row.device_id);
                if let Some(r) = &q.connection_request {
                    println!("connection request: {} ({})", r.outcome, r.message);
                }
                let row = if *wait > 0 {
                    let wait = std::time::Duration::from_secs(*wait);
                    usecases::tasks::get(&ctx, row.id, Some(wait))
                        .await
                        .map_err(e)?
                        .task
                } else {
                    row
                };
                println!("{}", show(&row));
                anyhow::Ok(())
            })?;
        }
        TaskCmd::List {
            device,
            status,
            limit,
        } => {
            let rows = store
                .find_tasks(
                    device.as_deref(),
                    crate::domain::taskops::status_filter(status.as_deref()).map_err(e)?,
                    None,
                    *limit,
                )
                .map_err(e)?;
            println!("ID\tDEVICE\tRPC\tSTATUS\tCREATED");
            for t in &rows {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    t.id,
                    t.device_id,
                    t.rpc,
                    t.status,
                    fmt_ms(t.created_at)
                );
            }
        }
        TaskCmd::Show { id } => {
            let t = store
                .get_task(*id)
                .map_err(e)?
                .ok_or_else(|| anyhow::anyhow!("no task {id}"))?;
            println!("{}", show(&t));
        }
        TaskCmd::Cancel { id } => {
            let t = rt
                .block_on(usecases::tasks::cancel(&env.ctx(), &Actor::cli(), *id))
                .map_err(e)?;
            println!("task {} cancelled", t.id);
        }
    }
    Ok(())
}
