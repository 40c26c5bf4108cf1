//! `fieldbridge modbus scan`: read registers of a device and print them
//! decoded several ways, to find the map of an unknown device.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};
use fieldbridge::config as crate_config;
use fieldbridge_modbus::config::{ModbusRtuConnection, ModbusTcpConnection, Parity, Table};
use fieldbridge_modbus::scan::{read_range, render};
use fieldbridge_modbus::transport::{Link, RtuLink, TcpLink};
use fieldbridge_modbus::{ModbusRtu, ModbusTcp};

/// A Modbus table, as given on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TableArg {
    /// Coils (FC 1).
    Coil,
    /// Discrete inputs (FC 2).
    Discrete,
    /// Input registers (FC 4).
    Input,
    /// Holding registers (FC 3).
    Holding,
}

/// Parity, as given on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ParityArg {
    /// No parity.
    None,
    /// Even parity.
    Even,
    /// Odd parity.
    Odd,
}

/// `fieldbridge modbus scan` arguments.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["tcp", "rtu", "device"])))]
pub struct ScanArgs {
    /// A Modbus device of the configuration: its connection and unit are used.
    #[arg(long)]
    device: Option<String>,
    /// The gateway configuration (with --device).
    #[arg(short, long, default_value = "gateway.yaml")]
    config: PathBuf,
    /// A Modbus TCP device or gateway, `host:port` (e.g. 192.168.1.10:502).
    #[arg(long)]
    tcp: Option<SocketAddr>,
    /// A Modbus RTU port (e.g. /dev/ttyUSB0).
    #[arg(long)]
    rtu: Option<PathBuf>,
    /// RTU line speed.
    #[arg(long, default_value_t = 9600)]
    baud: u32,
    /// RTU parity.
    #[arg(long, value_enum, default_value_t = ParityArg::None)]
    parity: ParityArg,
    /// RTU stop bits (1 or 2).
    #[arg(long, default_value_t = 1)]
    stop_bits: u8,
    /// Unit (slave) id (default 1, or the device's with --device).
    #[arg(short, long)]
    unit: Option<u8>,
    /// The table to read.
    #[arg(short, long, value_enum, default_value_t = TableArg::Holding)]
    table: TableArg,
    /// First address, 0-based (holding register 40001 is address 0).
    #[arg(short, long, default_value_t = 0)]
    address: u16,
    /// How many registers or bits.
    #[arg(short = 'n', long, default_value_t = 10)]
    count: u16,
    /// How long the device has to answer each request, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    timeout_ms: u64,
}

/// Runs the scan; the text to print, or why it failed.
pub async fn scan(args: ScanArgs) -> Result<String, String> {
    let timeout = Some(Duration::from_millis(args.timeout_ms.max(1)));
    let (mut link, unit) = match &args.device {
        Some(device) => from_config(&args.config, device)?,
        None => (direct(&args, timeout)?, 1),
    };
    let unit = args.unit.unwrap_or(unit);
    let table = match args.table {
        TableArg::Coil => Table::Coil,
        TableArg::Discrete => Table::Discrete,
        TableArg::Input => Table::Input,
        TableArg::Holding => Table::Holding,
    };
    if u32::from(args.address) + u32::from(args.count) > 65_536 || args.count == 0 {
        return Err("address + count must stay within 1..=65536".into());
    }
    let scanned = read_range(&mut link, unit, table, args.address, args.count)
        .await
        .map_err(|e| format!("unit {unit}: {e}"))?;
    link.close().await;
    Ok(render(table, args.address, &scanned))
}

/// The link and unit of a configured Modbus device.
fn from_config(config: &Path, device: &str) -> Result<(Link, u8), String> {
    let cfg =
        crate_config::load(config, crate_config::Purpose::Check).map_err(|e| e.to_string())?;
    for c in &cfg.connections {
        let (link, devices) = if let Some(tcp) = c.kind.of_kind::<ModbusTcp>() {
            (Link::Tcp(TcpLink::new(&tcp.settings)), &tcp.devices)
        } else if let Some(rtu) = c.kind.of_kind::<ModbusRtu>() {
            (Link::Rtu(RtuLink::new(&rtu.settings)), &rtu.devices)
        } else {
            continue;
        };
        if let Some(d) = devices.iter().find(|d| d.spec.id.as_str() == device) {
            return Ok((link, d.config.unit));
        }
    }
    Err(format!(
        "{} has no Modbus device `{device}`",
        config.display()
    ))
}

/// The link given by --tcp or --rtu.
fn direct(args: &ScanArgs, timeout: Option<Duration>) -> Result<Link, String> {
    Ok(match (args.tcp, &args.rtu) {
        (Some(address), _) => Link::Tcp(TcpLink::new(&ModbusTcpConnection {
            address,
            timeout,
            max_in_flight: 1,
        })),
        (None, Some(port)) => Link::Rtu(RtuLink::new(&ModbusRtuConnection {
            port: port.clone(),
            baud: args.baud,
            data_bits: 8,
            parity: match args.parity {
                ParityArg::None => Parity::None,
                ParityArg::Even => Parity::Even,
                ParityArg::Odd => Parity::Odd,
            },
            stop_bits: args.stop_bits,
            timeout,
            inter_request_delay: None,
        })),
        (None, None) => return Err("give --tcp HOST:PORT, --rtu PORT or --device ID".into()),
    })
}
