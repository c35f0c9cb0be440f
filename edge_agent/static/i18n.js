// The words of the handheld and manager pages in zh-CN and en-US, and the alert messages built
// from each rule's detail (the agent's own message is English and only a fallback). The agent
// inlines this file into both pages. The language is the person's choice on this browser, else
// the store's (http.language, the page's <html lang>).
"use strict";

const LANGS = ["zh-CN", "en-US"];
const LANG_KEY = "storeedge.lang";

const WORDS = {
  "zh-CN": {
    langName: "中文",
    live: "实时", reconnecting: "重新连接中…", denied: "请登录",
    tasks: (n) => `${n} 项待处理`, infos: (n) => `提示 ${n} 条`, empty: "暂无待处理任务",
    held: (n) => `↑ ${n} 项新任务`,
    sku: "商品", zone: "区域", bring: "补货", claimedBy: "认领人",
    place: { lane: "货道", kiosk: "收银机", device: "设备", sensor: "传感器", spot: "位置" },
    severity: { critical: "紧急", warning: "警告", info: "提示" },
    state: { open: "待认领", claimed: "已认领", escalated: "已升级", resolved: "已解决",
      cleared: "已自动清除" },
    action: { opened: "新建", worsened: "加重", claimed: "认领", confirmed: "扫码确认",
      escalated: "升级", resolved: "解决", cleared: "自动清除" },
    claim: "认领",
    outcome: { restocked: "已补货", counted: "已盘点", fixed: "已处理", removed: "已下架",
      false_alarm: "误报", other: "其他" },
    // An outcome named for what it means with this rule's alerts.
    outcomeOf: { click_collect: { fixed: "已拣货" }, checkout_suspect: { fixed: "已与顾客核对" }, checkout_voids: { fixed: "已与顾客核对" },
      misplaced: { fixed: "已放回原位" }, device_offline: { fixed: "已修复" } },
    signinLabel: "员工令牌", managerLabel: "店长令牌", signin: "登录", signout: "退出",
    allZones: "全部区域", zonesOf: "区域",
    scanOk: (r) => `✓ ${r.product} · 货道 ${r.lane}${r.bring ? ` · 补 ${r.bring} 件` : ""}`,
    scanNo: (code) => `✗ ${code}：没有对应任务`,
    failed: "操作失败", offline: "网络中断，请重试",
    refused: { 403: "这不是你区域的任务", 409: "任务已被他人认领或已结束", 422: "这个结果不适用于此任务",
      413: "内容太长" },
    tooMany: (s) => `尝试次数过多，请 ${s} 秒后再试`,
    minutes: (m) => (m < 1 ? "刚刚" : m < 60 ? `${m} 分钟` : `${Math.floor(m / 60)} 小时 ${m % 60} 分`),
    seconds: (s) => (s < 60 ? `${Math.round(s)} 秒` : s < 3600 ? `${Math.round(s / 60)} 分钟`
      : `${Math.floor(s / 3600)} 小时 ${Math.round((s % 3600) / 60)} 分`),
    title: { handheld: "门店任务", manager: "店长看板" },
    open: "未关闭的警报", rules: "按规则", people: "按人员", recent: "最近操作",
    cols: {
      rule: "规则", what: "内容", state: "状态", age: "时长", claimed_by: "认领人",
      opened: "新建", claimed: "认领", resolved: "解决", cleared: "自动清除", escalated: "升级",
      to_claim: "认领用时 中位/九成", to_resolve: "解决用时 中位/九成", name: "人员",
      confirmed: "扫码确认", outcomes: "结果", time: "时间", who: "人员", action: "操作",
      outcome: "结果",
    },
    // Store orders on the distribution centre (orders.js)
    ordersView: {
      heading: "门店订货", propose: "按补货策略生成订单", nothing: "现在不需要订货",
      proposed: (id) => `订单 #${id}：待审批`, approve: "批准订货", dismiss: "不订",
      approved: (id) => `订单 #${id} 已批准，配送中心将发货`, dismissed: (id) => `订单 #${id} 不订`,
      recent: "已批准和已收货的订单",
      cols: { product: "商品", demand: "日均销量", held: "门店库存", on_order: "在途",
        reorder: "订货点", qty: "订货数量", order: "订单", state: "状态", lines: "商品",
        by: "处理人", differences: "收货差异" },
      state: { proposed: "待审批", approved: "待收货", received: "已收货", dismissed: "不订",
        superseded: "已被新建议取代" },
      line: (product, units) => `${product} × ${units}`,
      kind: { over: (n) => `多 ${n} 件`, under: (n) => `少 ${n} 件`, not_ordered: (n) => `未订购 ${n} 件` },
      asOrdered: "与订单一致",
      refused: { 409: "订单已处理，或没有配置账务系统", 422: "订货数量不对", 503: "暂时连不上账务系统" },
    },
    // Receiving a delivery by scanning it (receiving.js)
    receivingView: {
      heading: "到货", order: (id, units) => `订单 #${id} · ${units} 件`, receive: "收货",
      title: (id) => `收货：订单 #${id}`, hint: "用扫描枪逐件扫描商品条码",
      cols: { product: "商品", ordered: "订购", scanned: "已扫", status: "状态" },
      ok: "✓ 一致", waiting: "未扫完",
      kind: { over: (n) => `多 ${n} 件`, under: (n) => `少 ${n} 件`, not_ordered: () => "未订购" },
      scanned: (product, got, want) => `✓ ${product}：${got}/${want}`,
      notOrdered: (product) => `⚠ ${product} 不在订单上`,
      refusedCode: (code, why) => `✗ ${code}：${why}`,
      confirm: (n) => (n ? `确认收货（${n} 项差异）` : "确认收货"), back: "返回",
      done: (id, n) => `订单 #${id} 已收货${n ? `，记录 ${n} 项差异` : ""}`,
      refused: { 409: "这个订单不在待收货状态", 422: "这个条码不是本店商品", 503: "暂时连不上账务系统" },
    },
    // Click and collect: picking an online order and handing it over (pickups.js)
    pickupsView: {
      heading: "线上订单", order: (id) => `订单 ${id}`,
      line: (units, product, lane) => `${product} × ${units}${lane ? `（货道 ${lane}）` : ""}`,
      state: { open: "待拣货", picked: "待顾客取货" }, pickedBy: (name) => `拣货人 ${name}`,
      picked: "已拣货", handOver: "已交给顾客", handedOver: (id) => `订单 ${id} 已交给顾客`,
      refused: { 403: "只有店长可以取消订单", 409: "订单状态已变化", 503: "暂时无法处理，请重试" },
    },
    // Count proposals against the ERP's quantity (counts.js)
    countsView: {
      heading: "盘点差异", compare: "与账面对比", none: "货架数量与账面一致",
      cols: { product: "商品", counted: "货架计数", erp: "账面数量", unbooked: "账面未记的销量",
        difference: "调整", act: "处理", state: "状态", by: "处理人" },
      approve: "批准调整", dismiss: "忽略", recent: "最近处理",
      state: { approved: "已批准", dismissed: "已忽略", superseded: "已被新对比取代" },
      approved: (product, d) => `已批准：${product} ${d > 0 ? "+" : ""}${d}`,
      refused: { 409: "已处理，或没有配置账务系统", 503: "暂时连不上账务系统" },
    },
    rule: {
      low_stock: "库存不足", out_of_stock: "缺货", days_of_cover: "即将售罄", shrink: "不明损耗",
      misplaced: "商品错放", shelf_camera: "货架与摄像头不符", sensor_stuck: "传感器读数不变",
      sensor_noisy: "传感器读数跳动", sensor_drift: "空货道重量漂移", device_offline: "设备离线",
      checkout_suspect: "自助收银可疑商品", checkout_voids: "自助收银多次撤销",
      cold_chain: "冷链温度异常", expiry: "临期商品",
      journal_quarantined: "日志已隔离", erp_dead_letter: "ERP 指令未送达",
      click_collect: "线上订单拣货", problem: "员工问题报告",
    },
    unknownRule: "其他规则",
    unverified: "已标记补货，但货架数量没有增加：",
    message: {
      low_stock: (d, n) => `${n.product} 在货道 ${n.lane} 仅剩 ${d.units} 件（阈值 ${d.threshold}），请补 ${d.bring} 件`,
      out_of_stock: (d, n) => `${n.product} 在货道 ${n.lane} 已缺货${d.bring ? `，请补 ${d.bring} 件` : ""}`,
      days_of_cover: (d, n) => `${n.product}：货架上 ${d.stock} 件，每小时售出 ${d.per_hour} 件，约 ${d.cover_hours} 小时后售罄`,
      shrink: (d, n) => `${n.product}：${d.day} 有 ${d.units} 件离开货架，没有销售记录`,
      misplaced: (d, n) => (d.epc
        ? `${n.product} 被放在货道 ${n.lane}，该货道应放 ${n.name(d.lane_sku)}`
        : `货道 ${n.lane}（${n.product}）的重量不是整件数：可能有异物或放错的商品`),
      shelf_camera: (d, n) => `货道 ${n.lane}（${n.product}）：摄像头看到 ${Math.round(d.occupancy * 100)}% 满，货架计数 ${d.count} 件`,
      sensor_stuck: (d, n) => `设备 ${n.lane} 的读数长时间不变，而同类设备的读数在变`,
      sensor_noisy: (d, n) => `${n.lane}：相邻读数跳动 ${d.median_step} ${n.temperature ? "℃" : "克"}`,
      sensor_drift: (d, n) => `货道 ${n.lane} 已空，但重量漂移了 ${d.drift_grams} 克`,
      device_offline: (d, n) => `设备 ${n.lane} 已离线 ${n.offlineFor}`,
      checkout_suspect: (d, n) => `收银机 ${n.lane}：装袋区有 ${Math.round(d.unexplained_grams)} 克商品未扫描`,
      checkout_voids: (d, n) => `收银机 ${n.lane}：同一笔交易撤销了 ${d.voids} 件商品`,
      cold_chain: (d, n) => `${n.zone}：${d.temperature} ℃，超出 ${d.min_c}～${d.max_c} ℃（传感器 ${n.lane}）`,
      expiry: (d, n) => `${n.product}${d.batch ? ` 批次 ${n.batch}` : ""} ${n.daysLeft < 0 ? `已过期 ${-n.daysLeft} 天` : `${n.daysLeft} 天后过期`}（${n.expiry}）`,
      problem: (d, n) => `${{ device_broken: "设备故障", wrong_price_or_label: "价格或标签错误", product_damaged: "商品损坏", system_wrong: "系统错误", other: "其他问题" }[d.category] ?? n.raw(d.category)}：${n.raw(d.text)}（${n.raw(d.reported_by)} 报告）`,
      click_collect: (d, n) => `拣货：线上订单 ${n.subject}${d.customer ? `（${n.raw(d.customer)}）` : ""}：${d.lines.map((x) => `${n.name(x.sku)} ${x.qty} 件${x.lane ? `（货道 ${n.raw(x.lane)}）` : ""}`).join("，")}`,
      journal_quarantined: (d, n) => `日志未通过完整性检查，已移至 ${n.raw(d.path)}；系统已新建日志。尚未送达 ERP 的销售可按 docs/journal.md 重放`,
      erp_dead_letter: (d) => `${d.dead} 条 ERP 指令进入死信队列，ERP 尚未收到：请在店长页面重试或删除`,
      other: (d, n) => `${n.ruleName}：${n.subject}`,
    },
    // Sign-in by name and PIN or QR card (signin.js)
    signinPeople: {
      title: "员工登录", name: "姓名", pin: "个人密码", qr: "或扫描工牌二维码", signin: "登录",
      wrong: "姓名或个人密码不对", wrongQr: "工牌无效或已作废",
      newTask: (n) => `新任务：${n}`,
    },
    // Problem reports (problems.js)
    problemForm: {
      open: "报告问题", title: "报告问题", category: "类别", priority: "优先级",
      categories: { device_broken: "设备故障", wrong_price_or_label: "价格或标签错误",
        product_damaged: "商品损坏", system_wrong: "系统错误", other: "其他问题" },
      priorities: { low: "低", normal: "普通", high: "高" },
      lane: "货道或设备（可选）", text: "说明", photo: "拍照（可选）", photoTaken: "已附照片",
      send: "提交", cancel: "取消", sent: "已提交，店长会处理", tooBig: "照片太大（最大 2 MB）",
      heading: "员工问题报告", none: "没有未处理的问题", photoAlt: "问题照片",
      cols: { priority: "优先级", category: "类别", text: "说明", lane: "位置", by: "报告人",
        age: "时长", state: "状态", photo: "照片", act: "处理" },
    },
    // The store's people (staff.js)
    staffAdmin: {
      heading: "员工与工牌", name: "姓名", role: "角色", roles: { staff: "店员", manager: "店长" },
      zones: "区域", allZones: "全部区域", pin: "个人密码", pinKeep: "4 到 8 位数字；不填则不变",
      yes: "有", no: "无", qr: "工牌", save: "保存", newQr: "制作工牌", remove: "删除",
      print: "打印", saved: (n) => `已保存：${n}`, removed: (n) => `已删除：${n}`,
      cardHint: "扫描此码登录手持终端", cardOnce: "此码只显示这一次；新工牌制作后旧工牌作废",
      none: "还没有员工", edit: "修改",
      cols: { name: "姓名", role: "角色", zones: "区域", pin: "个人密码", qr: "工牌", act: "操作" },
    },
    // The manager's trends (trends.js)
    trendsView: {
      heading: "趋势", window: "时间范围",
      windows: { 8: "最近 8 小时", 24: "最近 24 小时", 72: "最近 3 天", 168: "最近 7 天" },
      sales: "每小时销量", units: "件数", amount: "金额", alerts: "每小时新警报", opened: "新警报",
      toClaim: "认领用时（按规则）", claims: "认领次数", median: "中位", max: "最长",
      devices: "设备状态", device: "设备", stateOf: { online: "在线", degraded: "异常", offline: "离线" },
      allOnline: "所有设备在线", problems: "未处理的问题", noProblems: "没有未处理的问题",
      noData: "这段时间没有数据", export: "导出", salesTable: "销量", alertsTable: "警报",
    },
  },
  "en-US": {
    langName: "English",
    live: "Live", reconnecting: "Reconnecting…", denied: "Please sign in",
    tasks: (n) => `${n} open`, infos: (n) => `${n} notice${n === 1 ? "" : "s"}`,
    empty: "No open tasks", held: (n) => `↑ ${n} new task${n === 1 ? "" : "s"}`,
    sku: "Product", zone: "Zone", bring: "Bring", claimedBy: "Claimed by",
    place: { lane: "Lane", kiosk: "Kiosk", device: "Device", sensor: "Sensor", spot: "At" },
    severity: { critical: "Critical", warning: "Warning", info: "Info" },
    state: { open: "Open", claimed: "Claimed", escalated: "Escalated", resolved: "Resolved",
      cleared: "Auto-cleared" },
    action: { opened: "Opened", worsened: "Worsened", claimed: "Claimed", confirmed: "Scanned",
      escalated: "Escalated", resolved: "Resolved", cleared: "Auto-cleared" },
    claim: "Claim",
    outcome: { restocked: "Restocked", counted: "Counted", fixed: "Fixed", removed: "Removed",
      false_alarm: "False alarm", other: "Other" },
    outcomeOf: { click_collect: { fixed: "Picked" }, checkout_suspect: { fixed: "Checked with shopper" },
      checkout_voids: { fixed: "Checked with shopper" }, misplaced: { fixed: "Put back" },
      device_offline: { fixed: "Repaired" } },
    signinLabel: "Staff token", managerLabel: "Manager token", signin: "Sign in",
    signout: "Sign out", allZones: "all zones", zonesOf: "zones",
    scanOk: (r) => `✓ ${r.product} · lane ${r.lane}${r.bring ? ` · bring ${r.bring}` : ""}`,
    scanNo: (code) => `✗ ${code}: no task for it`,
    failed: "Could not do that", offline: "Network down, try again",
    refused: { 403: "Not a task of your zones", 409: "Someone else has it, or it has ended",
      422: "That outcome does not fit this task", 413: "Too long" },
    tooMany: (s) => `Too many tries; wait ${s} s`,
    minutes: (m) => (m < 1 ? "now" : m < 60 ? `${m} min` : `${Math.floor(m / 60)} h ${m % 60} min`),
    seconds: (s) => (s < 60 ? `${Math.round(s)} s` : s < 3600 ? `${Math.round(s / 60)} min`
      : `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`),
    title: { handheld: "Store tasks", manager: "Manager" },
    open: "Open alerts", rules: "By rule", people: "By person", recent: "Who did what",
    cols: {
      rule: "Rule", what: "What", state: "State", age: "Age", claimed_by: "Claimed by",
      opened: "Opened", claimed: "Claimed", resolved: "Resolved", cleared: "Auto-cleared",
      escalated: "Escalated", to_claim: "To claim median/p90",
      to_resolve: "To resolve median/p90", name: "Person", confirmed: "Scanned",
      outcomes: "Outcomes", time: "Time", who: "Who", action: "Action", outcome: "Outcome",
    },
    // Store orders on the distribution centre (orders.js)
    ordersView: {
      heading: "Store orders", propose: "Propose an order", nothing: "Nothing needs ordering now",
      proposed: (id) => `Order #${id}: to approve`, approve: "Approve order", dismiss: "Dismiss",
      approved: (id) => `Order #${id} approved: the distribution centre ships it`,
      dismissed: (id) => `Order #${id} dismissed`,
      recent: "Approved and received orders",
      cols: { product: "Product", demand: "Sold per day", held: "Held", on_order: "On order",
        reorder: "Reorder point", qty: "Order", order: "Order", state: "State", lines: "Products",
        by: "By", differences: "Received differences" },
      state: { proposed: "To approve", approved: "Awaiting delivery", received: "Received",
        dismissed: "Dismissed", superseded: "Superseded" },
      line: (product, units) => `${units} x ${product}`,
      kind: { over: (n) => `${n} over`, under: (n) => `${n} short`, not_ordered: (n) => `${n} not ordered` },
      asOrdered: "As ordered",
      refused: { 409: "Decided already, or no ERP configured", 422: "Those quantities will not do",
        503: "The ERP cannot be reached now" },
    },
    // Receiving a delivery by scanning it (receiving.js)
    receivingView: {
      heading: "Deliveries", order: (id, units) => `Order #${id} · ${units} units`, receive: "Receive",
      title: (id) => `Receiving order #${id}`, hint: "Scan each unit's barcode",
      cols: { product: "Product", ordered: "Ordered", scanned: "Scanned", status: "Status" },
      ok: "✓ as ordered", waiting: "not all scanned",
      kind: { over: (n) => `${n} over`, under: (n) => `${n} short`, not_ordered: () => "not ordered" },
      scanned: (product, got, want) => `✓ ${product}: ${got} of ${want}`,
      notOrdered: (product) => `⚠ ${product} is not on the order`,
      refusedCode: (code, why) => `✗ ${code}: ${why}`,
      confirm: (n) => (n ? `Confirm receipt (${n} difference${n === 1 ? "" : "s"})` : "Confirm receipt"),
      back: "Back",
      done: (id, n) => `Order #${id} received${n ? `, ${n} difference${n === 1 ? "" : "s"} recorded` : ""}`,
      refused: { 409: "This order is not awaiting a delivery", 422: "That barcode is no product of ours",
        503: "The ERP cannot be reached now" },
    },
    // Click and collect: picking an online order and handing it over (pickups.js)
    pickupsView: {
      heading: "Online orders", order: (id) => `Order ${id}`,
      line: (units, product, lane) => `${units} x ${product}${lane ? ` (lane ${lane})` : ""}`,
      state: { open: "To pick", picked: "Ready for pick-up" }, pickedBy: (name) => `Picked by ${name}`,
      picked: "Picked", handOver: "Handed over", handedOver: (id) => `Order ${id} handed over`,
      refused: { 403: "Only a manager cancels an order", 409: "The order has moved on",
        503: "Not now, try again" },
    },
    // Count proposals against the ERP's quantity (counts.js)
    countsView: {
      heading: "Counts against the ERP", compare: "Compare with the ERP",
      none: "The shelves agree with the ERP",
      cols: { product: "Product", counted: "Counted", erp: "ERP", unbooked: "Sold, not in the ERP yet",
        difference: "Adjust by", act: "Decide", state: "State", by: "By" },
      approve: "Approve", dismiss: "Dismiss", recent: "Recently decided",
      state: { approved: "Approved", dismissed: "Dismissed", superseded: "Superseded" },
      approved: (product, d) => `Approved: ${product} ${d > 0 ? "+" : ""}${d}`,
      refused: { 409: "Decided already, or no ERP configured", 503: "The ERP cannot be reached now" },
    },
    rule: {
      low_stock: "Low stock", out_of_stock: "Out of stock", days_of_cover: "Selling out soon",
      shrink: "Unexplained loss", misplaced: "Misplaced item", shelf_camera: "Shelf and camera disagree",
      sensor_stuck: "Sensor stuck", sensor_noisy: "Sensor noisy", sensor_drift: "Empty lane drifting",
      device_offline: "Device offline", checkout_suspect: "Checkout: unscanned item",
      checkout_voids: "Checkout: many voids", cold_chain: "Cold chain", expiry: "Expiring",
      journal_quarantined: "Journal set aside", erp_dead_letter: "ERP commands held back",
      click_collect: "Online order to pick", problem: "Reported by staff",
    },
    unknownRule: "Other rule",
    unverified: "Marked restocked, but the shelf did not rise: ",
    message: {
      low_stock: (d, n) => `${n.product} at lane ${n.lane}: ${d.units} left (threshold ${d.threshold}); bring ${d.bring}`,
      out_of_stock: (d, n) => `${n.product} at lane ${n.lane} is out of stock${d.bring ? `; bring ${d.bring}` : ""}`,
      days_of_cover: (d, n) => `${n.product}: ${d.stock} on the shelf, selling ${d.per_hour}/h: out in about ${d.cover_hours} h`,
      shrink: (d, n) => `${n.product}: ${d.units} left the shelf on ${d.day} with no sale to explain them`,
      misplaced: (d, n) => (d.epc
        ? `${n.product} is at lane ${n.lane}, which holds ${n.name(d.lane_sku)}`
        : `Lane ${n.lane} (${n.product}): a weight that is no whole number of units: a foreign or misplaced item?`),
      shelf_camera: (d, n) => `Lane ${n.lane} (${n.product}): the camera sees ${Math.round(d.occupancy * 100)}% full, the shelf counts ${d.count}`,
      sensor_stuck: (d, n) => `Device ${n.lane}: readings unchanged while its peers' change`,
      sensor_noisy: (d, n) => `${n.lane}: readings jump ${d.median_step} ${n.temperature ? "°C" : "g"} between samples`,
      sensor_drift: (d, n) => `Lane ${n.lane} is empty but its weight drifted ${d.drift_grams} g`,
      device_offline: (d, n) => `Device ${n.lane} offline for ${n.offlineFor}`,
      checkout_suspect: (d, n) => `Kiosk ${n.lane}: ${Math.round(d.unexplained_grams)} g in the bagging area not scanned`,
      checkout_voids: (d, n) => `Kiosk ${n.lane}: ${d.voids} items voided in one session`,
      cold_chain: (d, n) => `${n.zone}: ${d.temperature} °C, outside ${d.min_c}..${d.max_c} °C (sensor ${n.lane})`,
      expiry: (d, n) => `${n.product}${d.batch ? ` batch ${n.batch}` : ""} ${n.daysLeft < 0 ? `expired ${-n.daysLeft} day(s) ago` : `expires in ${n.daysLeft} day(s)`} (${n.expiry})`,
      problem: (d, n) => `${{ device_broken: "Device broken", wrong_price_or_label: "Wrong price or label", product_damaged: "Product damaged", system_wrong: "System wrong", other: "Other problem" }[d.category] ?? n.raw(d.category)}: ${n.raw(d.text)} (reported by ${n.raw(d.reported_by)})`,
      click_collect: (d, n) => `Pick online order ${n.subject}${d.customer ? ` (${n.raw(d.customer)})` : ""}: ${d.lines.map((x) => `${x.qty} x ${n.name(x.sku)}${x.lane ? ` (lane ${n.raw(x.lane)})` : ""}`).join(", ")}`,
      journal_quarantined: (d, n) => `The journal failed its integrity check and was moved to ${n.raw(d.path)}; a fresh one was started. Sales the ERP had not taken can be replayed (docs/journal.md)`,
      erp_dead_letter: (d) => `${d.dead} ERP command(s) in the dead letter: the ERP does not have them until retried or dropped on the manager page`,
      other: (d, n) => `${n.ruleName}: ${n.subject}`,
    },
    // Sign-in by name and PIN or QR card (signin.js)
    signinPeople: {
      title: "Staff sign-in", name: "Name", pin: "PIN", qr: "Or scan your QR card", signin: "Sign in",
      wrong: "Name or PIN not right", wrongQr: "Card not valid or replaced",
      newTask: (n) => `New task: ${n}`,
    },
    // Problem reports (problems.js)
    problemForm: {
      open: "Report a problem", title: "Report a problem", category: "Category",
      priority: "Priority",
      categories: { device_broken: "Device broken", wrong_price_or_label: "Wrong price or label",
        product_damaged: "Product damaged", system_wrong: "System wrong", other: "Other problem" },
      priorities: { low: "Low", normal: "Normal", high: "High" },
      lane: "Lane or device (optional)", text: "What is wrong", photo: "Take a photo (optional)",
      photoTaken: "Photo attached", send: "Send", cancel: "Cancel",
      sent: "Sent; the manager will take it", tooBig: "Photo too large (2 MB at most)",
      heading: "Problems reported by staff", none: "No open problems", photoAlt: "Photo of the problem",
      cols: { priority: "Priority", category: "Category", text: "What", lane: "Where", by: "Reported by",
        age: "Age", state: "State", photo: "Photo", act: "Act" },
    },
    // The store's people (staff.js)
    staffAdmin: {
      heading: "People and cards", name: "Name", role: "Role",
      roles: { staff: "Staff", manager: "Manager" }, zones: "Zones", allZones: "all zones",
      pin: "PIN", pinKeep: "4 to 8 digits; leave empty to keep", yes: "yes", no: "no",
      qr: "QR card", save: "Save", newQr: "Make a card", remove: "Remove", print: "Print",
      saved: (n) => `Saved: ${n}`, removed: (n) => `Removed: ${n}`,
      cardHint: "Scan to sign in on a handheld",
      cardOnce: "Shown this once; a new card makes the old one stop working",
      none: "Nobody yet", edit: "Change",
      cols: { name: "Name", role: "Role", zones: "Zones", pin: "PIN", qr: "QR card", act: "" },
    },
    // The manager's trends (trends.js)
    trendsView: {
      heading: "Trends", window: "Window",
      windows: { 8: "last 8 hours", 24: "last 24 hours", 72: "last 3 days", 168: "last 7 days" },
      sales: "Sales per hour", units: "Units", amount: "Amount", alerts: "New alerts per hour",
      opened: "New alerts", toClaim: "Time to claim, by rule", claims: "Claims", median: "Median",
      max: "Longest", devices: "Devices", device: "Device",
      stateOf: { online: "online", degraded: "degraded", offline: "offline" },
      allOnline: "All devices online", problems: "Open problems", noProblems: "No open problems",
      noData: "No data in this window", export: "Export", salesTable: "Sales",
      alertsTable: "Alerts",
    },
  },
};

// What kind of place an alert's location is, by rule.
const PLACE_OF = {
  checkout_suspect: "kiosk", checkout_voids: "kiosk", device_offline: "device",
  sensor_stuck: "device", cold_chain: "sensor", sensor_noisy: "spot",
};

// Midnight (UTC) of this device's date at ``now`` (epoch seconds), as Date.parse gives a date.
function today(now) {
  const t = new Date(now * 1000);
  return Date.UTC(t.getFullYear(), t.getMonth(), t.getDate());
}

const I18N = {
  lang: LANGS.includes(localStorage.getItem(LANG_KEY)) ? localStorage.getItem(LANG_KEY)
    : (LANGS.includes(document.documentElement.lang) ? document.documentElement.lang : "zh-CN"),
  // The store's, zones' and products' names (GET /api/labels), once signed in.
  labels: { store: "", zones: {}, products: {}, outcomes: {}, any_outcome: [] },
  get w() { return WORDS[this.lang]; },

  choose(lang) {
    this.lang = lang;
    localStorage.setItem(LANG_KEY, lang);
    document.documentElement.lang = lang;
  },
  other() { return LANGS.find((l) => l !== this.lang); },

  ruleName(rule) { return this.w.rule[rule] ?? this.w.unknownRule; },
  product(sku) { return (sku && this.labels.products[sku]) || sku || ""; },
  zone(id) { return (id && this.labels.zones[id]) || id || ""; },
  place(rule) { return this.w.place[PLACE_OF[rule] ?? "lane"]; },
  outcomes(rule) { return this.labels.outcomes[rule] ?? this.labels.any_outcome; },
  outcome(rule, outcome) {
    return this.w.outcomeOf[rule]?.[outcome] ?? this.w.outcome[outcome] ?? outcome;
  },

  // Names and codes inside a sentence are data, not words of the page's language: they travel
  // between Unicode isolates (FSI ... PDI), and fill() puts each into a <bdi data-raw>.
  raw(value) { return `\u2068${value ?? ""}\u2069`; },
  fill(node, text) {
    node.replaceChildren(...String(text).split(/[\u2068\u2069]/).map((part, i) => {
      if (i % 2 === 0) return document.createTextNode(part);
      const data = document.createElement("bdi");
      data.dataset.raw = "";
      data.textContent = part;
      return data;
    }));
  },

  // The alert's message in this language, from its rule's template and its detail.
  message(alert, now) {
    const d = alert.detail ?? {};
    const template = this.w.message[alert.rule] ?? this.w.message.other;
    const raw = (v) => this.raw(v);
    const names = {
      product: raw(this.product(alert.sku ?? d.sku) || d.gtin), lane: raw(alert.location ?? alert.subject),
      zone: raw(this.zone(d.zone)), subject: raw(alert.subject), ruleName: this.ruleName(alert.rule),
      name: (sku) => raw(this.product(sku)), temperature: alert.subject.endsWith("/t"),
      batch: raw(d.batch), expiry: raw(d.expiry), raw,
      offlineFor: this.w.seconds(Math.max(0, (d.opened_at ?? now) - (d.since ?? d.opened_at ?? now))),
      daysLeft: d.expiry ? Math.round((Date.parse(d.expiry) - today(now)) / 86400000) : 0,
    };
    // A detail without what the template needs (an older agent's alert) says less, not "undefined".
    const text = template(d, names);
    if (/undefined|NaN/.test(text)) return this.w.message.other(d, names);
    return d.restock_unverified ? this.w.unverified + text : text;
  },
};
document.documentElement.lang = I18N.lang;
