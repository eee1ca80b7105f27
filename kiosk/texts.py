"""Every text the kiosk shows, in Chinese (the default) and English.

A hall may replace the Chinese texts of the keys below through the config's
`texts` (docs/protocol.md §3.4); `{name}` fields are filled in by the scene."""

from __future__ import annotations

ZH = {
    "title": "政务服务好差评",
    "welcome": "欢迎评价，您的意见让服务更好",
    "start": "开始评价",
    "by_case": "输入或扫描办件编号",
    "large_on": "大字模式",
    "large_off": "标准字号",
    "language": "English",
    "find_title": "请选择评价对象",
    "by_unit": "按部门",
    "by_item": "按事项",
    "case_tab": "办件编号",
    "back": "返回",
    "next": "下一步",
    "skip": "跳过",
    "submit": "提交评价",
    "clear": "清除",
    "delete": "删除",
    "home": "首页",
    "no_units": "暂无可评价的部门，请稍后再试或向工作人员咨询",
    "unit_targets": "{unit}：请选择窗口或工作人员",
    "window": "窗口",
    "staff": "工作人员",
    "unit_itself": "评价本部门",
    "item_search": "输入事项名称的拼音首字母，如 sfz",
    "no_items": "没有找到匹配的事项",
    "case_prompt": "请输入办件编号，或将条码对准扫描口",
    "case_unknown": "未找到办件编号 {case_no}，请核对后重新输入，或向工作人员咨询",
    "case_rated": "办件 {case_no} 已经评价过，感谢您的参与",
    "scan_bad": "扫码内容无法识别，请重新扫描或手动输入",
    "case_bad": "办件编号只能包含字母、数字和 - _ .，最长64位",
    "level_title": "请您对本次服务进行评价",
    "rating_for": "评价对象：{target}",
    "level_5": "非常满意",
    "level_4": "满意",
    "level_3": "基本满意",
    "level_2": "不满意",
    "level_1": "非常不满意",
    "tags_bad": "请选择不满意的原因（必选，可多选）",
    "tags_good": "您对哪些方面满意？（可不选）",
    "tags_need": "请至少选择一项原因",
    "tags_missing_bad": "该评价等级的评价内容暂未配置，请在下一步用文字说明原因",
    "tags_missing_good": "该评价等级的评价内容暂未配置，请直接继续",
    "comment_title": "您还有什么想说的？（可选）",
    "comment_need": "请说明不满意的原因：选择常用语或输入文字",
    "comment_hint": "点选常用语，或用键盘输入",
    "phrases": "服务热情周到|办事效率高|指引清楚|等候时间太长|材料要求不清楚|需要多次跑动",
    "phone_title": "是否留下电话以便回访？（可选）",
    "phone_consent": "我同意将此号码仅用于本次评价的回访",
    "phone_bad": "号码格式不正确：请输入11位手机号，或带区号的固定电话",
    "phone_need_consent": "请勾选同意回访后提交，或清除号码",
    "thanks": "感谢您的评价！",
    "thanks_qr": "用手机扫码，可补充意见、查看办理进度",
    "thanks_no_qr": "您的评价已保存",
    "store_failed": "评价保存失败，请联系工作人员",
    "tech_pin": "技术人员登录：请输入PIN",
    "tech_pin_bad": "PIN 不正确",
    "tech_locked": "未设置技术人员PIN，无法进入维护界面",
    "tech_title": "维护信息",
    "tech_network": "网络测试",
    "tech_exit": "退出维护",
    "busy": "正在评价中，请稍候",
    "case_opened": "办件 {case_no} 已办结，请您评价",
}

EN = {
    "title": "Government service rating",
    "welcome": "Please rate our service - your opinion makes it better",
    "start": "Rate a service",
    "by_case": "Type or scan a case number",
    "large_on": "Large type",
    "large_off": "Normal type",
    "language": "中文",
    "find_title": "What would you like to rate?",
    "by_unit": "By department",
    "by_item": "By service item",
    "case_tab": "Case number",
    "back": "Back",
    "next": "Next",
    "skip": "Skip",
    "submit": "Submit",
    "clear": "Clear",
    "delete": "Delete",
    "home": "Home",
    "no_units": "Nothing to rate yet; please ask the staff",
    "unit_targets": "{unit}: choose a window or a staff member",
    "window": "Window",
    "staff": "Staff",
    "unit_itself": "Rate the department",
    "item_search": "Type the pinyin initials of the item, e.g. sfz",
    "no_items": "No matching service item",
    "case_prompt": "Type the case number, or hold the barcode to the scanner",
    "case_unknown": "Case number {case_no} not found; please check it or ask the staff",
    "case_rated": "Case {case_no} has already been rated, thank you",
    "scan_bad": "The scan could not be read; please scan again or type the number",
    "case_bad": "A case number has only letters, digits and - _ . (at most 64)",
    "level_title": "How satisfied are you with this service?",
    "rating_for": "Rating: {target}",
    "level_5": "Very satisfied",
    "level_4": "Satisfied",
    "level_3": "Fairly satisfied",
    "level_2": "Dissatisfied",
    "level_1": "Very dissatisfied",
    "tags_bad": "What went wrong? (choose at least one)",
    "tags_good": "What was good? (optional)",
    "tags_need": "Please choose at least one reason",
    "tags_missing_bad": "No reasons are set up for this level; please explain in the next step",
    "tags_missing_good": "No options are set up for this level; please continue",
    "comment_title": "Anything else to tell us? (optional)",
    "comment_need": "Please tell us why: pick a phrase or type",
    "comment_hint": "Pick a phrase or type on the keyboard",
    "phrases": "Friendly staff|Quick service|Clear guidance|Waited too long|"
    "Unclear requirements|Had to come back",
    "phone_title": "Leave a phone number for a follow-up call? (optional)",
    "phone_consent": "I agree that this number is used only to follow up this rating",
    "phone_bad": "Not a phone number: type an 11-digit mobile or a landline with area code",
    "phone_need_consent": "Tick the consent box to submit, or clear the number",
    "thanks": "Thank you for your rating!",
    "thanks_qr": "Scan to add comments or follow the case on your phone",
    "thanks_no_qr": "Your rating has been saved",
    "store_failed": "The rating could not be saved; please tell the staff",
    "tech_pin": "Technician: enter the PIN",
    "tech_pin_bad": "Wrong PIN",
    "tech_locked": "No technician PIN is set; the service screen stays locked",
    "tech_title": "Service information",
    "tech_network": "Network test",
    "tech_exit": "Leave",
    "busy": "A rating is in progress, please wait",
    "case_opened": "Case {case_no} is finished; please rate it",
}


class Texts:
    """Texts of the current language; the hall's overrides apply to Chinese."""

    def __init__(self, language: str = "zh", overrides: dict | None = None):
        self.language = language
        self.overrides = dict(overrides or {})

    def __call__(self, key: str, **fields) -> str:
        if self.language == "en":
            return EN[key].format(**fields)
        text = self.overrides.get(key)
        if text:
            try:
                return text.format(**fields)
            except (KeyError, ValueError, IndexError):
                pass  # a hall's text with a field the scene does not fill: the default
        return ZH[key].format(**fields)
